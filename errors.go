package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ocipull/registry/internal/wire"

	"github.com/ocipull/registry/internal/safetext"
	"github.com/ocipull/registry/oci"
)

// ErrorInfo is one entry of a registry's error body (distribution-spec,
// "Error Codes"): what [ClientError.Errors] holds.
type ErrorInfo = wire.ErrorInfo

// Sentinel errors, matched with [errors.Is]. A [*ClientError] matches the
// sentinel of its status and codes; local failures wrap the sentinel.
var (
	// ErrNotFound matches every 404, whatever the code, and a manifest or
	// blob a source does not hold: it is [oci.ErrNotFound], one sentinel.
	ErrNotFound = oci.ErrNotFound
	// ErrManifestUnknown matches MANIFEST_UNKNOWN, and a 404 on a manifest.
	ErrManifestUnknown = errors.New("manifest unknown")
	// ErrBlobUnknown matches BLOB_UNKNOWN, and a 404 on a blob.
	ErrBlobUnknown = errors.New("blob unknown")
	// ErrNameUnknown matches NAME_UNKNOWN.
	ErrNameUnknown = errors.New("repository name unknown")
	// ErrUnauthorized matches a 401 and the UNAUTHORIZED code.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrDenied matches a 403 and the DENIED code.
	ErrDenied = errors.New("access denied")
	// ErrTooManyRequests matches a 429 and the TOOMANYREQUESTS code.
	ErrTooManyRequests = errors.New("too many requests")
	// ErrUnsupported matches a 405 and the UNSUPPORTED code.
	ErrUnsupported = errors.New("unsupported")
	// ErrInvalidReference means a host, repository, tag or digest does not
	// match its grammar; nothing was requested.
	ErrInvalidReference = errors.New("invalid reference")
	// ErrProtocol means the registry answered outside the protocol: a wrong
	// status, a malformed header, a redirect loop.
	ErrProtocol = errors.New("registry protocol violation")
	// ErrStalled means a response stopped moving: no headers for
	// [Registry.StallTimeout], or less than 1 KiB of body in that time. It
	// is retried and resumed like a broken connection; an operation that
	// still fails wraps it.
	ErrStalled = errors.New("connection stalled")
)

// maxErrorBody caps how much of an error response is read: registry error
// bodies are a few hundred bytes, and an unbounded read of a hostile one
// would let it exhaust memory.
const maxErrorBody = 64 << 10

// maxBodyExcerpt is how much of an unparsable error body is kept for the message.
const maxBodyExcerpt = 512

// ClientError is an HTTP failure: the registry answered with an unexpected
// status. It carries the decoded registry error codes so callers can match
// them with [errors.Is] against the sentinels, or inspect them with
// [errors.As].
type ClientError struct {
	// Method and URL are the request's; the URL is redacted (no user
	// information, no query values except the registry's paging parameters).
	Method string
	URL    string
	// StatusCode is the HTTP status.
	StatusCode int
	// Errors are the registry's error entries, when the body had them.
	Errors []ErrorInfo
	// Body is the start of the body when it was not a registry error.
	Body string
	// RetryAfter is the delay the Retry-After header asked for, or zero.
	RetryAfter time.Duration
	// RateLimit is the allowance the response's rate-limit headers
	// stated (see [RateLimit]), or nil when it had none.
	RateLimit *RateLimit
}

// Error says what was requested, the status, and the registry's messages.
func (e *ClientError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	for i, info := range e.Errors {
		if i == 0 {
			b.WriteString(":")
		} else {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %s", printable(string(info.Code), 40))
		if info.Message != "" {
			fmt.Fprintf(&b, ": %s", printable(info.Message, 200))
		}
	}
	if len(e.Errors) == 0 && e.Body != "" {
		fmt.Fprintf(&b, ": %s", printable(e.Body, maxBodyExcerpt))
	}
	if e.StatusCode == http.StatusTooManyRequests && e.RateLimit != nil {
		fmt.Fprintf(&b, " (%s)", e.RateLimit)
	} else if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// hasCode reports whether the registry sent code.
func (e *ClientError) hasCode(code string) bool {
	for _, info := range e.Errors {
		if info.Code == code {
			return true
		}
	}
	return false
}

// Is matches the sentinels described on them.
func (e *ClientError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrManifestUnknown:
		return e.hasCode(wire.CodeManifestUnknown) || (e.StatusCode == http.StatusNotFound && len(e.Errors) == 0 && strings.Contains(e.URL, "/manifests/"))
	case ErrBlobUnknown:
		return e.hasCode(wire.CodeBlobUnknown) || (e.StatusCode == http.StatusNotFound && len(e.Errors) == 0 && strings.Contains(e.URL, "/blobs/"))
	case ErrNameUnknown:
		return e.hasCode(wire.CodeNameUnknown)
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized || e.hasCode(wire.CodeUnauthorized)
	case ErrDenied:
		return e.StatusCode == http.StatusForbidden || e.hasCode(wire.CodeDenied)
	case ErrTooManyRequests:
		return e.StatusCode == http.StatusTooManyRequests || e.hasCode(wire.CodeTooManyRequests)
	case ErrUnsupported:
		return e.StatusCode == http.StatusMethodNotAllowed || e.hasCode(wire.CodeUnsupported)
	}
	return false
}

// Temporary reports whether retrying may succeed: 408, 429 and 5xx other
// than 501 Not Implemented and 505 HTTP Version Not Supported.
func (e *ClientError) Temporary() bool {
	switch e.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	case http.StatusNotImplemented, http.StatusHTTPVersionNotSupported:
		return false
	}
	return e.StatusCode >= 500 && e.StatusCode <= 599
}

// newClientError reads (at most maxErrorBody of) resp's body and closes it.
func newClientError(resp *http.Response) *ClientError {
	e := &ClientError{StatusCode: resp.StatusCode}
	if resp.Request != nil {
		e.Method = resp.Request.Method
		e.URL = redactURL(resp.Request.URL)
	}
	now := time.Now()
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	if e.URL != "" {
		if r, ok := parseRateLimit(resp.Header, resp.Request.URL.Host, resp.StatusCode, now); ok {
			e.RateLimit = &r
		}
	}
	body, _ := readAllCapped(io.LimitReader(resp.Body, maxErrorBody), -1, maxErrorBody)
	resp.Body.Close()
	var er wire.ErrorResponse
	if err := json.Unmarshal(body, &er); err == nil && len(er.Errors) > 0 {
		if len(er.Errors) > 16 {
			er.Errors = er.Errors[:16]
		}
		e.Errors = er.Errors
	} else if len(body) > 0 {
		e.Body = string(body)
	}
	return e
}

// keptQueryParams are the query parameters that stay readable in errors:
// the registry's own paging and filtering parameters. Every other value
// (signatures and credentials of presigned URLs) is redacted.
var keptQueryParams = map[string]bool{"n": true, "last": true, "artifactType": true, "service": true, "scope": true, "ns": true}

// redactURL renders u without user information and with query values other
// than the registry's own replaced by "REDACTED".
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		q := c.Query()
		for k, vs := range q {
			if !keptQueryParams[k] {
				for i := range vs {
					vs[i] = "REDACTED"
				}
			}
		}
		c.RawQuery = q.Encode()
	}
	c.Fragment = ""
	return c.String()
}

// printable shortens s to max bytes and neutralises control, format and
// invalid characters ([safetext.String]), so a hostile answer cannot forge
// log lines, drive a terminal or flood it.
func printable(s string, max int) string { return safetext.String(s, max) }
