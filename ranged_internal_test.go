package registry

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

// rangedFixture serves one blob of size bytes through the fault injector
// (every blob response throttled per connection), counting requests and
// the largest number in flight.
type rangedFixture struct {
	desc     v1.Descriptor
	inj      *faults.Injector
	ts       *httptest.Server
	mu       sync.Mutex
	ranges   []string
	inFlight atomic.Int64
	peak     atomic.Int64
}

func newRangedFixture(t *testing.T, size int, rate int64) *rangedFixture {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	mem := oci.NewMemory()
	desc := mem.Add(v1.MediaTypeImageLayer, data)
	cfg := mem.Add(v1.MediaTypeImageConfig, []byte(`{}`))
	img, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: []v1.Descriptor{desc}})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer()
	if err := srv.AddRef("big/blob", "v1", img); err != nil {
		t.Fatal(err)
	}
	f := &rangedFixture{desc: desc, inj: &faults.Injector{Next: srv}}
	f.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, string(desc.Digest)) && r.Method == http.MethodGet {
			f.mu.Lock()
			f.ranges = append(f.ranges, r.Header.Get("Range"))
			f.mu.Unlock()
			n := f.inFlight.Add(1)
			defer f.inFlight.Add(-1)
			for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
			}
		}
		f.inj.ServeHTTP(w, r)
	}))
	t.Cleanup(f.ts.Close)
	f.inj.Add(faults.Rule{Method: http.MethodGet, Path: "/blobs/", Fault: faults.Throttle(rate)})
	return f
}

// client is a client of the fixture with small ranged-fetch thresholds:
// blobs of 2 MiB and more, 512 KiB chunks, a 64 KiB probe, "fast" from
// 100 MB/s.
func (f *rangedFixture) client(t *testing.T, lanes, maxConns int) *Client {
	c := (&Registry{Scheme: "http", Host: strings.TrimPrefix(f.ts.URL, "http://"),
		RangeParallelism: lanes, MaxConnsPerHost: maxConns, GetBackOff: func() backoff.BackOff {
			return backoff.WithMaxRetries(backoff.NewConstantBackOff(5*time.Millisecond), 5)
		},
	}).Repository("big/blob")
	c.Registry().init().ranged = rangedConfig{minSize: 2 << 20, chunk: 512 << 10, probe: 64 << 10, fast: 100 << 20}
	return c
}

// pull reads the blob through c, verified; it returns the error and the
// time it took.
func (f *rangedFixture) pull(c *Client) (time.Duration, error) {
	start := time.Now()
	rc, err := c.OpenBlob(context.Background(), f.desc)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return time.Since(start), err
}

func (f *rangedFixture) bounded() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.ranges {
		if strings.HasPrefix(r, "bytes=") && !strings.HasSuffix(r, "-") {
			n++
		}
	}
	return n
}

// On a capped link the blob comes over several bounded ranges in flight
// at once, in order and verified; on an uncapped one it stays one stream.
// (How much faster that is lives in BenchmarkCappedLink, not here: a
// timed assertion fails on a busy machine.)
func TestRangedFetchOnCappedLink(t *testing.T) {
	const size, rate = 4 << 20, 8 << 20 // 8 MB/s per connection: 0.5 s for one stream
	f := newRangedFixture(t, size, rate)
	single, err := f.pull(f.client(t, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	parallel, err := f.pull(f.client(t, 8, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("one stream %v, ranged %v, %d bounded ranges, peak %d in flight", single, parallel, f.bounded(), f.peak.Load())
	if f.bounded() < 4 {
		t.Errorf("%d bounded range requests, want the blob in chunks", f.bounded())
	}
	if p := f.peak.Load(); p < 3 {
		t.Errorf("at most %d requests in flight, want several ranges at once", p)
	}
	// At most 8 ranges transferring and 2 waiting for a buffer, plus the
	// single stream the client closed at the boundary, which the server
	// may still be writing when counted.
	if p := f.peak.Load(); p > 8+preopened+1 {
		t.Errorf("%d requests in flight, want at most %d", p, 8+preopened+1)
	}
	// The first stream is bounded too: the ranges asked for add up to the
	// blob, so nothing sent was thrown away.
	if asked := f.askedBytes(t); asked != 2*size {
		t.Errorf("the two pulls asked for %d bytes, want %d (no over-fetch)", asked, 2*size)
	}
	// Uncapped: one stream only.
	// The threshold is low (2 MB/s) so that an unthrottled loopback
	// stream is fast however busy the machine running the test is.
	fast := newRangedFixture(t, size, 1<<40)
	fc := fast.client(t, 8, 0)
	fc.Registry().init().ranged.fast = 2 << 20
	if _, err := fast.pull(fc); err != nil {
		t.Fatal(err)
	}
	// The first stream's bounded window and one request for the rest.
	if fast.mu.Lock(); len(fast.ranges) != 2 || !strings.HasSuffix(fast.ranges[1], fmt.Sprint(size-1)) {
		t.Errorf("fast link: requests %q, want the first window and one stream for the rest", fast.ranges)
	}
	fast.mu.Unlock()
}

// askedBytes adds up the lengths of the bounded ranges asked for (an
// unbounded request counts the rest of the blob).
func (f *rangedFixture) askedBytes(t *testing.T) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, r := range f.ranges {
		if r == "" {
			n += f.desc.Size
			continue
		}
		var first, last int64
		if _, err := fmt.Sscanf(r, "bytes=%d-%d", &first, &last); err != nil {
			t.Fatalf("range %q: %v", r, err)
		}
		n += last - first + 1
	}
	return n
}

// A reader slower than the link (a busy CPU hashing and writing) is not
// a slow link: the probe times the waits inside Read, which a full socket
// buffer answers at once, so the blob stays one stream.
func TestRangedProbeIgnoresSlowReader(t *testing.T) {
	const size = 4 << 20
	f := newRangedFixture(t, size, 1<<40)
	c := f.client(t, 8, 0)
	// "Fast" from 2 MB/s, so that a loopback stream is fast however busy
	// the machine running the test is.
	c.Registry().init().ranged.fast = 2 << 20
	rc, err := c.OpenBlob(context.Background(), f.desc)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// Through the probe (the first 256 KiB) the reader takes 1 MB/s, half
	// what the client calls fast; its pace is simulated, nothing waits on
	// it for synchronisation.
	buf := make([]byte, 32<<10)
	for read := 0; ; {
		n, err := rc.Read(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if read += n; read <= 256<<10 {
			time.Sleep(32 * time.Millisecond)
		}
	}
	if f.mu.Lock(); len(f.ranges) != 2 {
		t.Errorf("requests %q: a slow reader on a fast link switched to ranges", f.ranges)
	}
	f.mu.Unlock()
}

// Registries that ignore ranges (200) or answer them wrongly get one
// stream, not an error.
func TestRangedFetchFallsBack(t *testing.T) {
	for name, fault := range map[string]faults.Fault{
		"ranges ignored":      faults.IgnoreRange(),
		"wrong Content-Range": faults.WrongContentRange(),
	} {
		t.Run(name, func(t *testing.T) {
			f := newRangedFixture(t, 4<<20, 8<<20)
			f.inj.Reset()
			f.inj.Add(faults.Rule{Method: http.MethodGet, Path: "/blobs/", Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				faults.Throttle(8<<20).Serve(w, r, func() http.Handler {
					if r.Header.Get("Range") != "" {
						return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fault.Serve(w, r, next) })
					}
					return next
				}())
			})})
			if _, err := f.pull(f.client(t, 8, 0)); err != nil {
				t.Fatalf("got %v, want one stream after the fall back", err)
			}
		})
	}
}

// A range cut mid-way is resumed on its own; a corrupt range fails the
// digest and nothing lands.
func TestRangedFetchFaults(t *testing.T) {
	t.Run("cut", func(t *testing.T) {
		f := newRangedFixture(t, 4<<20, 8<<20)
		f.inj.Reset()
		var cut atomic.Bool
		f.inj.Add(faults.Rule{Method: http.MethodGet, Path: "/blobs/", Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			if strings.HasPrefix(r.Header.Get("Range"), "bytes=2") && cut.CompareAndSwap(false, true) {
				faults.CutAfter(100<<10).Serve(w, r, next)
				return
			}
			faults.Throttle(8<<20).Serve(w, r, next)
		})})
		if _, err := f.pull(f.client(t, 8, 0)); err != nil {
			t.Fatal(err)
		}
		if !cut.Load() {
			t.Skip("no range started at a 2... offset")
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		f := newRangedFixture(t, 4<<20, 8<<20)
		f.inj.Reset()
		var done atomic.Bool
		f.inj.Add(faults.Rule{Method: http.MethodGet, Path: "/blobs/", Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			if strings.HasSuffix(r.Header.Get("Range"), "-") || r.Header.Get("Range") == "" || !done.CompareAndSwap(false, true) {
				faults.Throttle(8<<20).Serve(w, r, next)
				return
			}
			faults.Corrupt().Serve(w, r, next)
		})})
		dir := t.TempDir()
		l, err := oci.CreateLayout(dir)
		if err != nil {
			t.Fatal(err)
		}
		c := f.client(t, 8, 0)
		err = l.WriteBlob(context.Background(), c.Source(), f.desc, nil)
		if !errors.Is(err, oci.ErrDigestMismatch) {
			t.Fatalf("got %v, want ErrDigestMismatch", err)
		}
		if _, err := l.Blob(context.Background(), f.desc); !errors.Is(err, ErrNotFound) {
			t.Errorf("the corrupt blob landed: %v", err)
		}
	})
}

// Each range is redirected to a presigned URL on another origin: the
// ranges go there, without Authorization.
func TestRangedFetchRedirects(t *testing.T) {
	f := newRangedFixture(t, 4<<20, 8<<20)
	var leaked atomic.Bool
	var served atomic.Int64
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Store(true)
		}
		served.Add(1)
		r2 := r.Clone(r.Context())
		r2.URL.Path = strings.TrimPrefix(r.URL.Path, "/storage")
		faults.Throttle(8<<20).Serve(w, r2, f.inj.Next)
	}))
	defer storage.Close()
	f.inj.Reset()
	f.inj.Add(faults.Rule{Method: http.MethodGet, Path: "/blobs/", Fault: faults.Redirect(storage.URL + "/storage")})
	if _, err := f.pull(f.client(t, 8, 0)); err != nil {
		t.Fatal(err)
	}
	if served.Load() < 4 || leaked.Load() {
		t.Errorf("%d requests at the storage, Authorization leaked: %v", served.Load(), leaked.Load())
	}
}

// MaxConnsPerHost = 1 means one stream.
func TestRangedFetchMaxConnsOne(t *testing.T) {
	f := newRangedFixture(t, 4<<20, 8<<20)
	if _, err := f.pull(f.client(t, 8, 1)); err != nil {
		t.Fatal(err)
	}
	if n := f.bounded(); n != 0 || f.peak.Load() > 1 {
		t.Errorf("%d bounded ranges, peak %d in flight, want one stream", n, f.peak.Load())
	}
}

// Two large blobs at once share the client's chunk budget: both complete,
// verified, whichever gets the buffers.
func TestRangedFetchSharedBudget(t *testing.T) {
	a := newRangedFixture(t, 4<<20, 8<<20)
	c := a.client(t, 3, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.pull(c)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if made := c.Registry().init().chunks.made; made > 3 {
		t.Errorf("%d chunk buffers made, budget 3", made)
	}
}

// sharedLink caps the bytes of every response together (a link that is
// slow as a whole, or a sender short of CPU), not each connection.
type sharedLink struct {
	mu   sync.Mutex
	next time.Time
	rate float64 // bytes per second
}

func (l *sharedLink) take(n int) {
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	wait := time.Until(l.next)
	l.mu.Unlock()
	time.Sleep(wait) // the link's pace, simulated
}

type sharedLinkWriter struct {
	http.ResponseWriter
	l *sharedLink
}

func (w sharedLinkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), 16<<10)
		w.l.take(n)
		k, err := w.ResponseWriter.Write(p[:n])
		written += k
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// TestRangedTrialWithoutGain: on a link slow as a whole (every
// connection shares 8 MB/s), the trial chunk brings nothing more, so the
// fetch does not fan out: the first stream's window, the trial chunk and
// one stream for the rest, asking for each byte once.
func TestRangedTrialWithoutGain(t *testing.T) {
	const size = 4 << 20
	f := newRangedFixture(t, size, 1<<40)
	link := &sharedLink{rate: 8 << 20}
	f.inj.Reset()
	f.inj.Add(faults.Rule{Method: http.MethodGet, Path: "/blobs/", Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		next.ServeHTTP(sharedLinkWriter{w, link}, r)
	})})
	if _, err := f.pull(f.client(t, 8, 0)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	ranges := append([]string(nil), f.ranges...)
	f.mu.Unlock()
	const trial = 1
	rest := fmt.Sprintf("bytes=%d-%d", (1+trial)*512<<10, size-1)
	if len(ranges) != 1+trial+1 || ranges[len(ranges)-1] != rest {
		t.Errorf("requests %q, want the first window, the trial's %d chunks and one stream for the rest (%s)", ranges, trial, rest)
	}
	if asked := f.askedBytes(t); asked != size {
		t.Errorf("asked for %d bytes, want %d (no over-fetch)", asked, size)
	}
}
