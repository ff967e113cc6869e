package wire

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// The error codes of the distribution spec ("Error Codes").
const (
	CodeBlobUnknown     = "BLOB_UNKNOWN"
	CodeDigestInvalid   = "DIGEST_INVALID"
	CodeManifestUnknown = "MANIFEST_UNKNOWN"
	CodeNameInvalid     = "NAME_INVALID"
	CodeNameUnknown     = "NAME_UNKNOWN"
	CodeSizeInvalid     = "SIZE_INVALID"
	CodeUnauthorized    = "UNAUTHORIZED"
	CodeDenied          = "DENIED"
	CodeUnsupported     = "UNSUPPORTED"
	CodeTooManyRequests = "TOOMANYREQUESTS"
	// CodeUnavailable is not in the spec's table (which allows others): a
	// cache answering 502/503 because its upstream could not.
	CodeUnavailable = "UNAVAILABLE"
)

// ErrorInfo is one entry of a registry's error body.
type ErrorInfo struct {
	Code    string          `json:"code"`
	Message string          `json:"message,omitempty"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

// ErrorResponse is a registry's error body: {"errors":[...]}.
type ErrorResponse struct {
	Errors []ErrorInfo `json:"errors"`
}

// WriteError answers status with one error of code and msg. msg goes to
// the client as it is: callers pass fixed text, never a registry's,
// path's or helper's string.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(ErrorResponse{Errors: []ErrorInfo{{Code: code, Message: msg}}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Del("Docker-Content-Digest")
	h.Del("ETag")
	w.WriteHeader(status)
	w.Write(b)
}
