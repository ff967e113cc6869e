package registry_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// FuzzServerRequests sends arbitrary methods, paths, queries and Range
// headers to a server with content and auth: it must never panic, and every
// failure must be a registry error body.
func FuzzServerRequests(f *testing.F) {
	mem := oci.NewMemory()
	img := newImage(f, mem, linuxAMD64, 100)
	s := registry.NewServer()
	mustAdd(f, s, "a/b", "v1", img)
	sa := registry.NewServer()
	sa.Auth = &registry.ServerAuth{Anonymous: []string{"*"}}
	mustAdd(f, sa, "a/b", "v1", img)
	layer := string(img.Layers()[0].Digest)
	for _, seed := range [][4]string{
		{"GET", "/v2/a/b/manifests/v1", "", ""},
		{"HEAD", "/v2/a/b/blobs/" + layer, "", "bytes=0-5"},
		{"GET", "/v2/a/b/blobs/" + layer, "", "bytes=-5"},
		{"GET", "/v2/a/b/tags/list", "n=1&last=a", ""},
		{"GET", "/v2/_catalog", "n=-1", ""},
		{"GET", "/v2/_catalog", "n=0", ""},
		{"GET", "/v2/a/b/tags/list", "n=0&last=zzz", ""},
		{"HEAD", "/v2/a/b/tags/list", "n=1", ""},
		{"GET", "/v2/a/b/referrers/" + string(img.Digest()), "artifactType=x", ""},
		{"PUT", "/v2/a/b/manifests/v1", "", ""},
		{"GET", "/v2/../../etc/passwd", "", ""},
		{"GET", "/token", "scope=repository:a/b:pull&service=x", ""},
		{"POST", "/token", "", ""},
		{"GET", "/v2/a/b/blobs/sha256:", "", "bytes=99999999999999999999-"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, method, path, query, rng string) {
		for _, h := range []http.Handler{s, sa} {
			req := &http.Request{Method: method, URL: &url.URL{Path: path, RawQuery: query}, Header: http.Header{}, Host: "r.example", Body: http.NoBody}
			if rng != "" {
				req.Header.Set("Range", rng)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 400 && method != http.MethodHead {
				var er errorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || len(er.Errors) == 0 {
					t.Fatalf("%s %s: status %d without a registry error body: %q", method, path, rec.Code, rec.Body.String())
				}
			}
		}
	})
}

// FuzzParseReference: never panics; what it accepts round-trips through String.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"ubuntu", "ghcr.io/o/r:v1", "localhost:5000/a@sha256:" + "0000000000000000000000000000000000000000000000000000000000000000", "[::1]:5/a:b", "a//b", "A", "docker.io/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := registry.ParseReference(s)
		if err != nil {
			return
		}
		r2, err := registry.ParseReference(r.String())
		if err != nil || r2 != r {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, r, r.String(), r2, err)
		}
	})
}
