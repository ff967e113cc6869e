package wire

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// WriteJSON answers 200 with v as JSON of contentType (no body for HEAD).
func WriteJSON(w http.ResponseWriter, r *http.Request, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, http.StatusInternalServerError, CodeUnsupported, "encoding failed")
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}

// pageParams reads the n and last query parameters of a paginated list
// (distribution-spec, "Listing Tags"). n absent means all; bad means 400.
func pageParams(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	n = -1
	if v := q.Get("n"); v != "" {
		x, perr := strconv.Atoi(v)
		if perr != nil || x < 0 {
			return 0, "", fmt.Errorf("n must be a non-negative integer")
		}
		n = x
	}
	return n, q.Get("last"), nil
}

// page returns the items after last, at most n of them (n<0: all), and
// whether more remain. items must be sorted.
func page(items []string, n int, last string) ([]string, bool) {
	start := 0
	if last != "" {
		start = sort.SearchStrings(items, last)
		if start < len(items) && items[start] == last {
			start++
		}
	}
	items = items[start:]
	if n >= 0 && len(items) > n {
		return items[:n], true
	}
	return items, false
}

// ServePage answers a paginated list (tags or catalog): n and last select
// the page of the items (sorted here), a Link names the next one, and
// wrap builds the JSON body around the page.
func ServePage(w http.ResponseWriter, r *http.Request, path string, items []string, wrap func([]string) any) {
	n, last, err := pageParams(r)
	if err != nil {
		WriteError(w, http.StatusBadRequest, CodeUnsupported, err.Error())
		return
	}
	sort.Strings(items)
	out, more := page(items, n, last)
	if more && len(out) > 0 {
		w.Header().Set("Link", "<"+path+"?"+PageQuery(n, out[len(out)-1])+`>; rel="next"`)
	}
	WriteJSON(w, r, "application/json", wrap(out))
}

// TagList is the body of a tag list.
type TagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// SetBlobIdentity sets the headers that name a blob response's content.
func SetBlobIdentity(h http.Header, d digest.Digest) {
	h["Docker-Content-Digest"] = []string{string(d)}
	h["Etag"] = []string{`"` + string(d) + `"`}
	h["Accept-Ranges"] = []string{"bytes"}
	h["Content-Type"] = []string{"application/octet-stream"}
}

// WriteBlobStatus writes the length (and Content-Range of a partial
// answer) of a blob of size bytes answered for rng, and the status.
func WriteBlobStatus(w http.ResponseWriter, size int64, rng ByteRange) {
	h := w.Header()
	if !rng.Partial {
		h["Content-Length"] = []string{strconv.FormatInt(size, 10)}
		w.WriteHeader(http.StatusOK)
		return
	}
	h["Content-Range"] = []string{fmt.Sprintf("bytes %d-%d/%d", rng.First, rng.Last, size)}
	h["Content-Length"] = []string{strconv.FormatInt(rng.Last-rng.First+1, 10)}
	w.WriteHeader(http.StatusPartialContent)
}

// WriteBlobHeaders starts a blob answer of rng: identity, length, status.
func WriteBlobHeaders(w http.ResponseWriter, d digest.Digest, size int64, rng ByteRange) {
	SetBlobIdentity(w.Header(), d)
	WriteBlobStatus(w, size, rng)
}

// WriteManifest answers a manifest request with raw, described by desc:
// its media type, length, digest and entity tag; 304 when If-None-Match
// names it; no body for HEAD. It reports the body bytes written.
func WriteManifest(w http.ResponseWriter, r *http.Request, desc v1.Descriptor, raw []byte) int {
	h := w.Header()
	h["Content-Type"] = []string{desc.MediaType}
	h["Content-Length"] = []string{strconv.Itoa(len(raw))}
	h["Docker-Content-Digest"] = []string{string(desc.Digest)}
	h["Etag"] = []string{`"` + string(desc.Digest) + `"`}
	if match := r.Header.Get("If-None-Match"); match != "" && EtagMatches(match, string(desc.Digest)) {
		w.WriteHeader(http.StatusNotModified)
		return 0
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodGet {
		return 0
	}
	n, _ := w.Write(raw)
	return n
}

// WriteEmptyJSON answers the API root: 200 with {}.
func WriteEmptyJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write([]byte("{}"))
	}
}
