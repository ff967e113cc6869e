package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func errorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var er errorBody
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &er); err != nil || len(er.Errors) == 0 {
		return ""
	}
	return er.Errors[0].Code
}

func TestServerStatusCodes(t *testing.T) {
	mem := oci.NewMemory()
	img := newImage(t, mem, linuxAMD64, 100)
	s := registry.NewServer()
	mustAdd(t, s, "a/b", "v1", img)
	layer := img.Layers()[0]
	missing := digest.FromString("missing")
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
		hdr          map[string]string
	}{
		{"GET", "/v2/", 200, "", nil},
		{"GET", "/v2", 200, "", nil},
		{"GET", "/v2/a/b/manifests/v1", 200, "", nil},
		{"HEAD", "/v2/a/b/manifests/v1", 200, "", nil},
		{"GET", "/v2/a/b/manifests/" + string(img.Digest()), 200, "", nil},
		{"GET", "/v2/a/b/manifests/v2", 404, "MANIFEST_UNKNOWN", nil},
		{"GET", "/v2/a/b/manifests/" + string(missing), 404, "MANIFEST_UNKNOWN", nil},
		{"GET", "/v2/a/b/manifests/sha256:zz", 400, "DIGEST_INVALID", nil},
		{"GET", "/v2/x/y/manifests/v1", 404, "NAME_UNKNOWN", nil},
		{"GET", "/v2/A/B/manifests/v1", 400, "NAME_INVALID", nil},
		{"GET", "/v2/a/b/blobs/" + string(layer.Digest), 200, "", nil},
		{"HEAD", "/v2/a/b/blobs/" + string(layer.Digest), 200, "", nil},
		{"GET", "/v2/a/b/blobs/" + string(layer.Digest), 206, "", map[string]string{"Range": "bytes=10-19"}},
		{"GET", "/v2/a/b/blobs/" + string(layer.Digest), 416, "SIZE_INVALID", map[string]string{"Range": "bytes=100-"}},
		{"GET", "/v2/a/b/blobs/" + string(missing), 404, "BLOB_UNKNOWN", nil},
		{"GET", "/v2/a/b/blobs/notadigest", 400, "DIGEST_INVALID", nil},
		{"PUT", "/v2/a/b/manifests/v1", 405, "UNSUPPORTED", nil},
		{"POST", "/v2/a/b/blobs/uploads/", 405, "UNSUPPORTED", nil},
		{"DELETE", "/v2/a/b/blobs/" + string(layer.Digest), 405, "UNSUPPORTED", nil},
		{"PATCH", "/v2/a/b/blobs/uploads/x", 405, "UNSUPPORTED", nil},
		{"GET", "/v2/a/b/tags/list", 200, "", nil},
		{"GET", "/v2/a/b/tags/list?n=x", 400, "UNSUPPORTED", nil},
		{"GET", "/v2/_catalog", 200, "", nil},
		{"GET", "/v2/a/b/referrers/" + string(img.Digest()), 200, "", nil},
		{"GET", "/other", 404, "UNSUPPORTED", nil},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp := get(t, s, tc.method, tc.path, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, tc.status)
			}
			if resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
				t.Error("missing Docker-Distribution-API-Version")
			}
			if tc.code != "" && tc.method != "HEAD" {
				if got := errorCode(t, resp); got != tc.code {
					t.Errorf("code: got %q, want %q", got, tc.code)
				}
			}
		})
	}
}

func TestServerManifestHeaders(t *testing.T) {
	mem := oci.NewMemory()
	img := newImage(t, mem, linuxAMD64, 100)
	s := registry.NewServer()
	mustAdd(t, s, "a/b", "v1", img)
	for _, method := range []string{"GET", "HEAD"} {
		resp := get(t, s, method, "/v2/a/b/manifests/v1", nil)
		h := resp.Header
		if h.Get("Content-Type") != v1.MediaTypeImageManifest {
			t.Errorf("%s Content-Type: %q", method, h.Get("Content-Type"))
		}
		if h.Get("Docker-Content-Digest") != string(img.Digest()) {
			t.Errorf("%s Docker-Content-Digest: %q", method, h.Get("Docker-Content-Digest"))
		}
		if h.Get("Content-Length") != fmt.Sprint(len(img.RawManifest())) {
			t.Errorf("%s Content-Length: %q", method, h.Get("Content-Length"))
		}
		if h.Get("ETag") != `"`+string(img.Digest())+`"` {
			t.Errorf("%s ETag: %q", method, h.Get("ETag"))
		}
		body, _ := io.ReadAll(resp.Body)
		if method == "GET" && string(body) != string(img.RawManifest()) {
			t.Error("body differs")
		}
		if method == "HEAD" && len(body) != 0 {
			t.Error("HEAD has a body")
		}
	}
}

func TestServerRanges(t *testing.T) {
	mem := oci.NewMemory()
	img := newImage(t, mem, linuxAMD64, 1000)
	layer := img.Layers()[0]
	rc, _ := mem.Blob(context.Background(), layer)
	content, _ := io.ReadAll(rc)
	s := registry.NewServer()
	mustAdd(t, s, "a/b", "v1", img)
	for _, tc := range []struct {
		rng          string
		status       int
		first, last  int
		contentRange string
	}{
		{"bytes=0-9", 206, 0, 9, "bytes 0-9/1000"},
		{"bytes=990-", 206, 990, 999, "bytes 990-999/1000"},
		{"bytes=-10", 206, 990, 999, "bytes 990-999/1000"},
		{"bytes=500-5000", 206, 500, 999, "bytes 500-999/1000"},
		{"bytes=1000-", 416, 0, 0, "bytes */1000"},
		{"bytes=0-1,5-6", 200, 0, 999, ""},
		{"items=0-1", 200, 0, 999, ""},
	} {
		t.Run(tc.rng, func(t *testing.T) {
			resp := get(t, s, "GET", "/v2/a/b/blobs/"+string(layer.Digest), map[string]string{"Range": tc.rng})
			if resp.StatusCode != tc.status {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, tc.status)
			}
			if got := resp.Header.Get("Content-Range"); got != tc.contentRange {
				t.Errorf("Content-Range: got %q, want %q", got, tc.contentRange)
			}
			if tc.status == 416 {
				return
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != string(content[tc.first:tc.last+1]) {
				t.Errorf("body: got %d bytes, want bytes %d-%d", len(body), tc.first, tc.last)
			}
		})
	}
}

func TestServerPullThrough(t *testing.T) {
	// A ref read by the client from one server, added to a second, is
	// served through: blob bytes come from the first on request.
	mem := oci.NewMemory()
	idx := newIndex(t, mem)
	upstream := registry.NewServer()
	mustAdd(t, upstream, "up/stream", "multi", idx)
	c := clientFor(t, serve(t, upstream), "up/stream")
	ref, err := c.Read(context.Background(), "multi")
	if err != nil {
		t.Fatal(err)
	}
	cache := registry.NewServer()
	mustAdd(t, cache, "cached", "multi", ref)
	c2 := clientFor(t, serve(t, cache), "cached")
	ref2, err := c2.Read(context.Background(), "multi@"+string(idx.Digest()))
	if err != nil {
		t.Fatal(err)
	}
	img, err := oci.ImageForPlatform(context.Background(), ref2, linuxARMv7)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range img.Layers() {
		b, err := readAll(t, img, l)
		if err != nil || digest.FromBytes(b) != l.Digest {
			t.Fatalf("layer %s: %v", l.Digest, err)
		}
	}
}

func TestServerConcurrentAddAndRead(t *testing.T) {
	mem := oci.NewMemory()
	s := registry.NewServer()
	ts := serve(t, s)
	imgs := make([]*oci.Image, 16)
	for i := range imgs {
		imgs[i] = newImage(t, mem, linuxAMD64, 1000)
	}
	var wg sync.WaitGroup
	for i, img := range imgs {
		wg.Add(2)
		go func(i int, img *oci.Image) {
			defer wg.Done()
			if err := s.AddRef("con/current", fmt.Sprintf("t%d", i), img); err != nil {
				t.Error(err)
			}
		}(i, img)
		go func(i int) {
			defer wg.Done()
			c := clientFor(t, ts, "con/current")
			for j := 0; j < 10; j++ {
				if _, err := c.Tags(context.Background()); err != nil && !strings.Contains(err.Error(), "NAME_UNKNOWN") {
					t.Error(err)
				}
			}
		}(i)
	}
	wg.Wait()
	c := clientFor(t, ts, "con/current")
	tags, err := c.Tags(context.Background())
	if err != nil || len(tags) != 16 {
		t.Fatalf("tags: %d, %v", len(tags), err)
	}
}

func TestAddRefValidates(t *testing.T) {
	mem := oci.NewMemory()
	img := newImage(t, mem, linuxAMD64, 10)
	s := registry.NewServer()
	if err := s.AddRef("Bad", "", img); err == nil {
		t.Error("bad repository accepted")
	}
	if err := s.AddRef("ok", "bad tag", img); err == nil {
		t.Error("bad tag accepted")
	}
}

func TestServerRefusesStoredContentOfWrongLength(t *testing.T) {
	mem := oci.NewMemory()
	img := newImage(t, mem, linuxAMD64, 5000)
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := l.Write(ctx, "v1", img, nil); err != nil {
		t.Fatal(err)
	}
	ref, err := l.Read(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	s := registry.NewServer()
	mustAdd(t, s, "a/b", "v1", ref)
	layer := img.Layers()[0]
	if err := os.Truncate(l.BlobPath(layer.Digest), 100); err != nil {
		t.Fatal(err)
	}
	resp := get(t, s, "GET", "/v2/a/b/blobs/"+string(layer.Digest), nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502 for a truncated stored blob", resp.StatusCode)
	}
}

func TestServerPageSizeZero(t *testing.T) {
	mem := oci.NewMemory()
	img := newImage(t, mem, linuxAMD64, 10)
	s := registry.NewServer()
	mustAdd(t, s, "a/b", "v1", img)
	for path, want := range map[string]string{"/v2/a/b/tags/list?n=0": `"tags":[]`, "/v2/_catalog?n=0": `"repositories":[]`} {
		resp := get(t, s, "GET", path, nil)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Header.Get("Link") != "" || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d %q %s", path, resp.StatusCode, resp.Header.Get("Link"), body)
		}
	}
}

// A recorded /token request names the user who logged in (newcomer
// item 7: RecordedRequest.User was empty for them).
func TestRecordedTokenRequestNamesUser(t *testing.T) {
	img := newImage(t, oci.NewMemory(), linuxAMD64, 10)
	reg := ocitest.NewRegistry(t, &registry.ServerAuth{Users: map[string]registry.ServerUser{"alice": {Password: "pw", Repositories: []string{"*"}}}},
		map[string]oci.Ref{"team/app:v1": img})
	if _, err := reg.Client("team/app", "alice", "pw").Read(context.Background(), "v1"); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range reg.Requests() {
		if r.Path == "/token" {
			found = true
			if r.User != "alice" {
				t.Errorf("/token recorded with user %q, want alice", r.User)
			}
		}
	}
	if !found {
		t.Fatal("no /token request recorded")
	}
}
