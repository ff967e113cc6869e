package mirror_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/internal/wiretest"
	"github.com/ocipull/registry/mirror"
)

// holdEvery is a fault that sends a body step bytes at a time, each
// step once a value arrives on next (or next is closed).
func holdEvery(step int, next <-chan struct{}) faults.Fault {
	return faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, nh http.Handler) {
		nh.ServeHTTP(&holdingWriter{ResponseWriter: w, step: step, next: next}, r)
	})
}

type holdingWriter struct {
	http.ResponseWriter
	step, sent int
	next       <-chan struct{}
}

func (h *holdingWriter) Write(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		if h.sent > 0 && h.sent%h.step == 0 {
			h.ResponseWriter.(http.Flusher).Flush()
			<-h.next
		}
		k, err := h.ResponseWriter.Write(p[:min(len(p), h.step-h.sent%h.step)])
		done, h.sent, p = done+k, h.sent+k, p[k:]
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// TestFollowersSendFromWindow: the requests following a large blob's
// landing send its newest bytes from the flight's window in memory, not
// from the landing's file; a request that falls behind the window (its
// client reads nothing while the landing moves on by more than the
// window) is served from the file, and every client gets the blob's exact
// bytes.
//
// The upstream sends 8 MiB at a time, each once the fast client read the
// ones before (so that client stays at the landing's edge); after 40 MiB
// the lagging client, which had read one byte, reads the same 40 MiB (the
// first of them from the file: the window holds the newest 16 MiB); then
// the upstream sends the rest.
func TestFollowersSendFromWindow(t *testing.T) {
	const size, held, step = 48 << 20, 40 << 20, 8 << 20
	up := newUpstream(t, size)
	next := make(chan struct{})
	up.inj.Add(faults.Rule{Method: http.MethodGet, Path: "/blobs/", Fault: holdEvery(step, next)})
	m, _ := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, func(c *mirror.Config) {
		u := c.Upstreams[""]
		u.NoRanges = true // one upstream stream, held at a known byte
		c.Upstreams[""] = u
	})
	spy := &wiretest.FileSends{Next: m}
	ts := httptest.NewServer(spy)
	defer ts.Close()
	layer := up.img.Layers()[0]
	want, err := up.img.Source().Blob(t.Context(), layer)
	if err != nil {
		t.Fatal(err)
	}
	content, _ := io.ReadAll(want)
	get := func() *http.Response {
		resp, err := http.Get(ts.URL + "/v2/team/app/blobs/" + string(layer.Digest))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET: %v %v", resp, err)
		}
		return resp
	}
	fast := get()
	defer fast.Body.Close()
	lagging := get()
	defer lagging.Body.Close()
	got := map[*http.Response][]byte{fast: make([]byte, size), lagging: make([]byte, size)}
	if _, err := io.ReadFull(lagging.Body, got[lagging][:1]); err != nil {
		t.Fatal(err)
	}
	for n := step; n <= held; n += step {
		if _, err := io.ReadFull(fast.Body, got[fast][n-step:n]); err != nil {
			t.Fatal(err)
		}
		if n < held {
			next <- struct{}{}
		}
	}
	if _, err := io.ReadFull(lagging.Body, got[lagging][1:held]); err != nil {
		t.Fatal(err)
	}
	filesWhileHeld, _ := spy.Bytes()
	close(next)
	for resp, b := range got {
		if _, err := io.ReadFull(resp.Body, b[held:]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, content) {
			t.Fatal("a client got other bytes than the blob's")
		}
	}
	// The lagging client fell more than the window behind: the bytes
	// before the window came from the file. The fast client's came from
	// the window: before the upstream went on, under the 40 MiB of one
	// client came from files.
	if filesWhileHeld == 0 || filesWhileHeld >= held {
		t.Errorf("%d bytes sent from files while the upstream held; want some (the lagging client's) but less than one client's %d", filesWhileHeld, held)
	}
	if n := up.count("GET", "/blobs/"); n != 1 {
		t.Errorf("%d upstream blob GETs, want 1", n)
	}
}
