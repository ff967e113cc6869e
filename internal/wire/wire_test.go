package wire

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		path, name, kind, ref string
		ok                    bool
	}{
		{"/v2/a/b/manifests/v1", "a/b", "manifests", "v1", true},
		{"/v2/a/blobs/sha256:x", "a", "blobs", "sha256:x", true},
		{"/v2/a/referrers/sha256:x", "a", "referrers", "sha256:x", true},
		{"/v2/a/b/tags/list", "a/b", "tags", "", true},
		{"/v2/a/manifests/b/manifests/v1", "a/manifests/b", "manifests", "v1", true},
		{"/v2/blobs/blobs/x", "blobs", "blobs", "x", true},
		{"/v2/a/manifests/", "", "", "", false},
		{"/v2/manifests/v1", "", "", "", false},
		{"/v2/tags/list", "", "", "", false},
		{"/v2/a/other/v1", "", "", "", false},
		{"/v3/a/manifests/v1", "", "", "", false},
		{"/v2//manifests/v1", "", "", "", false},
	} {
		rt, ok := ParseRoute(tc.path)
		name, kind, ref := rt.Name, rt.Kind, rt.Reference
		if name != tc.name || kind != tc.kind || ref != tc.ref || ok != tc.ok {
			t.Errorf("%s: got %q %q %q %v", tc.path, name, kind, ref, ok)
		}
	}
}

// FuzzParseRoute: never panics; an accepted route rebuilds the path.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/v2/a/b/manifests/v1", "/v2/a/tags/list", "/v2//blobs/x", "/v2/a/referrers/sha256:x", "/v2/%2e%2e/blobs/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		rt, ok := ParseRoute(path)
		if !ok {
			return
		}
		if rt.Name == "" || Path(rt.Name, rt.Kind, rt.Reference) != path {
			t.Fatalf("%q parsed as %+v, which rebuilds %q", path, rt, Path(rt.Name, rt.Kind, rt.Reference))
		}
	})
}

// FuzzServedHeaders feeds client-controlled Range and If-None-Match
// values to their readers: no panic, and an accepted range lies inside
// the body.
func FuzzServedHeaders(f *testing.F) {
	for _, s := range []string{"bytes=0-", "bytes=-5", "bytes=99999999999999999999999-", `W/"sha256:x", *`, "bytes=5-1", "bytes=0-0,1-1", ""} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, v string, size int64) {
		if size < 0 {
			size = -(size + 1)
		}
		if r, ok := ParseRange(v, size); ok && r.Partial && (r.First < 0 || r.Last < r.First || r.Last >= size) {
			t.Fatalf("Range %q against %d bytes accepted as %d-%d", v, size, r.First, r.Last)
		} else if !ok && size > 0 && !strings.HasPrefix(v, "bytes=") {
			t.Fatalf("Range %q (not a byte range) refused for %d bytes", v, size)
		}
		EtagMatches(v, "sha256:abc")
	})
}

func TestPreamble(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		status       int
		kind         string
	}{
		{"GET", "/v2/", 0, Root},
		{"HEAD", "/v2", 0, Root},
		{"GET", "/v2/_catalog", 0, Catalog},
		{"GET", "/v2/a/manifests/v1", 0, Manifests},
		{"DELETE", "/v2/a/manifests/v1", http.StatusMethodNotAllowed, ""},
		{"GET", "/metrics", http.StatusNotFound, ""},
		{"GET", "/v2/a/other/v1", http.StatusNotFound, ""},
	} {
		w := httptest.NewRecorder()
		rt, ok := Preamble(w, httptest.NewRequest(tc.method, tc.path, nil))
		if tc.status == 0 {
			if !ok || rt.Kind != tc.kind {
				t.Errorf("%s %s: got %+v %v, want kind %q", tc.method, tc.path, rt, ok, tc.kind)
			}
			continue
		}
		if ok || w.Code != tc.status {
			t.Errorf("%s %s: got ok=%v status %d, want %d", tc.method, tc.path, ok, w.Code, tc.status)
		}
		if w.Header().Get("Docker-Distribution-Api-Version") != "registry/2.0" {
			t.Errorf("%s %s: no API version header", tc.method, tc.path)
		}
	}
}
