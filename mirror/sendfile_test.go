package mirror_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/internal/wiretest"
)

// TestWarmHitReachesSendfile: a blob served from the store, whole or a
// range, goes to the connection as a file through every wrapper the cache
// puts around the response (its request log, its write deadlines), so
// net/http sends it with sendfile(2) instead of copying it through user
// space.
func TestWarmHitReachesSendfile(t *testing.T) {
	const size = 3 << 20
	up := newUpstream(t, size)
	m, ts := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	layer := up.img.Layers()[0]
	path := "/v2/team/app/blobs/" + string(layer.Digest)
	if code, _, _, err := rawGet(t, ts, http.MethodGet, path); err != nil || code != http.StatusOK {
		t.Fatalf("cold GET: %d %v", code, err)
	}
	spy := &wiretest.FileSends{Next: m}
	warm := httptest.NewServer(spy)
	defer warm.Close()
	for _, rng := range []string{"", "bytes=1000-2000999"} {
		req, _ := http.NewRequest(http.MethodGet, warm.URL+path, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		want := int64(size)
		if rng != "" {
			want = 2000000
		}
		if n != want {
			t.Fatalf("%q: %d bytes, want %d", rng, n, want)
		}
	}
	warm.Close() // waits for the handlers to return
	files, others := spy.Bytes()
	if files != size+2000000 || others != 0 {
		t.Errorf("ReadFrom got %d bytes from files and %d from other readers; want all %d from the stored file", files, others, size+2000000)
	}
}

// TestFollowersReachSendfile: requests streaming the landing of a blob
// too small for a window (see TestFollowersSendFromWindow; the one that
// started the fetch and one that joined it) send the landed bytes from the
// landing's file with sendfile, not through user space.
func TestFollowersReachSendfile(t *testing.T) {
	const size = 3 << 20
	up := newUpstream(t, size)
	// 8 MB/s: the landing takes ~0.4 s, so both requests follow it.
	up.inj.Add(faults.Rule{Method: http.MethodGet, Path: "/blobs/", Fault: faults.Throttle(8 << 20)})
	m, _ := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	spy := &wiretest.FileSends{Next: m}
	ts := httptest.NewServer(spy)
	path := "/v2/team/app/blobs/" + string(up.img.Layers()[0].Digest)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			code, _, body, err := rawGet(t, ts, http.MethodGet, path)
			if err != nil || code != http.StatusOK || len(body) != size {
				t.Errorf("GET: %d, %d bytes, %v", code, len(body), err)
			}
		})
	}
	wg.Wait()
	ts.Close()
	if files, others := spy.Bytes(); files != 2*size || others != 0 {
		t.Errorf("ReadFrom got %d bytes from files and %d from other readers; want all %d from the landing's file", files, others, 2*size)
	}
	if n := up.count("GET", "/blobs/"); n != 1 {
		t.Errorf("%d upstream blob GETs, want 1 (the second request joins the first's fetch)", n)
	}
}
