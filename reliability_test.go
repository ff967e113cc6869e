package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

// faultCase is one row of the fault matrix.
type faultCase struct {
	name  string
	auth  bool                                                                  // serve with token auth (anonymous pulls)
	setup func(inj *faults.Injector, storage *httptest.Server, bigLayer string) // adds the fault rules
	want  error                                                                 // nil: the pull completes with verified bytes
}

func faultCases() []faultCase {
	// Rules on blobs apply to the 300 KB layer only; "BIG" in a rule's
	// path stands for its digest.
	rule := func(r ...faults.Rule) func(*faults.Injector, *httptest.Server, string) {
		return func(inj *faults.Injector, _ *httptest.Server, big string) {
			for _, x := range r {
				x.Path = strings.Replace(x.Path, "BIG", big, 1)
				inj.Add(x)
			}
		}
	}
	blobs, manifests := "/blobs/BIG", "/manifests/"
	return []faultCase{
		{"cut after 100 KB, twice", false, rule(faults.Rule{Path: blobs, Times: 2, Fault: faults.CutAfter(100_000)}), nil},
		{"cut before any body byte", false, rule(faults.Rule{Path: blobs, Times: 1, Fault: faults.CutAfter(0)}), nil},
		{"stall mid-body", false, rule(faults.Rule{Path: blobs, Times: 1, Fault: faults.StallAfter(50_000, 5*time.Second)}), nil},
		{"drip mid-body", false, rule(faults.Rule{Path: blobs, Times: 1, Fault: faults.Drip(50_000, 10, 20*time.Millisecond)}), nil},
		{"stall before headers", false, rule(faults.Rule{Path: blobs, Times: 1, Fault: faults.Stall(5 * time.Second)}), nil},
		{"503 Retry-After seconds", false, rule(faults.Rule{Path: blobs, Times: 2, Fault: faults.Status(503, "0")}), nil},
		{"503 Retry-After date", false, rule(faults.Rule{Path: manifests, Times: 1, Fault: faults.Status(503, time.Now().UTC().Format(http.TimeFormat))}), nil},
		{"429", false, rule(faults.Rule{Path: blobs, Times: 1, Fault: faults.Status(429, "")}), nil},
		{"Range ignored on resume", false, rule(
			faults.Rule{Path: blobs, Nth: 1, Fault: faults.CutAfter(100_000)},
			faults.Rule{Path: blobs, Nth: 2, Fault: faults.IgnoreRange()}), nil},
		{"wrong Content-Range on resume", false, rule(
			faults.Rule{Path: blobs, Nth: 1, Fault: faults.CutAfter(100_000)},
			faults.Rule{Path: blobs, Fault: faults.WrongContentRange()}), registry.ErrProtocol},
		{"Content-Length too short", false, rule(faults.Rule{Path: blobs, Fault: faults.LieContentLength(-1000)}), oci.ErrSizeMismatch},
		{"Content-Length too long", false, rule(faults.Rule{Path: blobs, Fault: faults.LieContentLength(1000)}), oci.ErrSizeMismatch},
		{"wrong bytes for a digest", false, rule(faults.Rule{Path: blobs, Fault: faults.Corrupt()}), oci.ErrDigestMismatch},
		{"wrong bytes for a manifest", false, rule(faults.Rule{Path: manifests, Fault: faults.Corrupt()}), oci.ErrDigestMismatch},
		{"oversized blob body", false, rule(faults.Rule{Path: blobs, Fault: faults.Oversize(1 << 20)}), nil},
		{"oversized manifest body", false, rule(faults.Rule{Path: manifests, Fault: faults.Oversize(5 << 20)}), oci.ErrTooLarge},
		{"no Docker-Content-Digest", false, rule(faults.Rule{Path: manifests, Fault: faults.DropHeader("Docker-Content-Digest")}), nil},
		{"Content-Type application/json", false, rule(faults.Rule{Path: manifests, Fault: faults.SetHeader("Content-Type", "application/json")}), nil},
		{"wrong Content-Type", false, rule(faults.Rule{Path: manifests, Fault: faults.SetHeader("Content-Type", "text/html")}), oci.ErrUnsupportedMediaType},
		{"blobs redirected to storage", true, func(inj *faults.Injector, storage *httptest.Server, _ string) {
			inj.Add(faults.Rule{Path: "/blobs/", Fault: faults.Redirect(storage.URL)})
		}, nil},
		{"token fetch cut", true, rule(faults.Rule{Path: "/token", Times: 1, Fault: faults.CutAfter(0)}), nil},
		{"token fetch 503", true, rule(faults.Rule{Path: "/token", Times: 2, Fault: faults.Status(503, "0")}), nil},
		{"token fetch stalls", true, rule(faults.Rule{Path: "/token", Times: 1, Fault: faults.Stall(5 * time.Second)}), nil},
	}
}

// connCounter tracks a server's open connections.
type connCounter struct{ open, total atomic.Int64 }

func (cc *connCounter) hook(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		cc.open.Add(1)
		cc.total.Add(1)
	case http.StateClosed, http.StateHijacked:
		cc.open.Add(-1)
	}
}

func startCounted(t *testing.T, h http.Handler) (*httptest.Server, *connCounter) {
	t.Helper()
	cc := &connCounter{}
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ConnState = cc.hook
	ts.Start()
	return ts, cc
}

// waitFor polls cond for up to 15 s (a busy runner is slow to close).
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

type faultResult struct {
	runs, recovered, typed int
	worst                  time.Duration
	wrongBytes             int64
}

// runFault runs one case once: a fresh server and client, a pull of the
// image's manifest and every blob, then the leak checks.
func runFault(t *testing.T, fc faultCase, res *faultResult) {
	t.Helper()
	baseline := runtime.NumGoroutine()
	mem := oci.NewMemory()
	img := newImage(t, mem, linuxAMD64, 300_000, 20_000)
	srv := registry.NewServer()
	if fc.auth {
		srv.Auth = &registry.ServerAuth{Anonymous: []string{"*"}}
	}
	mustAdd(t, srv, "fault/img", "v1", img)
	plain := registry.NewServer()
	mustAdd(t, plain, "fault/img", "v1", img)
	var leaks int64
	storageInj := &faults.Injector{Next: plain}
	storageInj.Add(faults.Rule{Fault: faults.RejectAuthorization(&leaks)})
	storage, storageConns := startCounted(t, storageInj)
	inj := &faults.Injector{Next: srv}
	fc.setup(inj, storage, string(img.Layers()[0].Digest))
	ts, conns := startCounted(t, inj)
	c := clientFor(t, ts, "fault/img")
	c.Registry().StallTimeout = 200 * time.Millisecond

	start := time.Now()
	var got error
	func() {
		ref, err := c.Read(context.Background(), "v1")
		if err != nil {
			got = err
			return
		}
		pulled := ref.(*oci.Image)
		for _, d := range pulled.Blobs() {
			b, err := readAll(t, pulled, d)
			if err != nil {
				got = err
				if int64(len(b)) == d.Size {
					t.Errorf("a failed read delivered all %d bytes", d.Size)
				}
				return
			}
			if digest.FromBytes(b) != d.Digest {
				res.wrongBytes += int64(len(b))
			}
		}
	}()
	took := time.Since(start)
	res.runs++
	if took > res.worst {
		res.worst = took
	}
	switch {
	case fc.want == nil && got == nil:
		res.recovered++
	case fc.want != nil && errors.Is(got, fc.want):
		res.typed++
	default:
		t.Errorf("%s: got %v, want %v", fc.name, got, fc.want)
	}
	if leaks != 0 {
		t.Errorf("%s: Authorization sent to the redirect target %d times", fc.name, leaks)
	}
	c.Registry().CloseIdleConnections()
	if !waitFor(func() bool { return conns.open.Load() == 0 && storageConns.open.Load() == 0 }) {
		t.Errorf("%s: %d server connections still open after the pull", fc.name, conns.open.Load()+storageConns.open.Load())
	}
	ts.Close()
	storage.Close()
	if !waitFor(func() bool { return runtime.NumGoroutine() <= baseline }) {
		buf := make([]byte, 1<<16)
		t.Errorf("%s: %d goroutines left over (baseline %d):\n%s", fc.name, runtime.NumGoroutine()-baseline, baseline, buf[:runtime.Stack(buf, true)])
	}
}

// TestFaultMatrix runs every fault OCIPULL_FAULT_RUNS times (default 3):
// each either recovers with verified bytes or fails with its typed error,
// leaves no connection open and no goroutine behind, and never hands out
// wrong bytes as good ones. With -v it prints the RELIABILITY.md table.
func TestFaultMatrix(t *testing.T) {
	runs := 3
	if v, err := strconv.Atoi(os.Getenv("OCIPULL_FAULT_RUNS")); err == nil && v > 0 {
		runs = v
	}
	var table strings.Builder
	table.WriteString("| fault | runs | outcome | worst time | bytes wrongly delivered |\n|---|---|---|---|---|\n")
	var mu sync.Mutex
	for _, fc := range faultCases() {
		t.Run(fc.name, func(t *testing.T) {
			var res faultResult
			for i := 0; i < runs; i++ {
				runFault(t, fc, &res)
			}
			if res.wrongBytes != 0 {
				t.Errorf("%d bytes wrongly delivered", res.wrongBytes)
			}
			outcome := fmt.Sprintf("recovered %d/%d", res.recovered, res.runs)
			if fc.want != nil {
				outcome = fmt.Sprintf("`%v` %d/%d", fc.want, res.typed, res.runs)
			}
			mu.Lock()
			fmt.Fprintf(&table, "| %s | %d | %s | %s | %d |\n", fc.name, res.runs, outcome, res.worst.Round(time.Millisecond), res.wrongBytes)
			mu.Unlock()
		})
	}
	t.Logf("fault matrix:\n%s", table.String())
}

// hostileManifestServer serves raw as the manifest "v1" of a/b and counts
// every request; blobs come from mem.
func hostileManifestServer(t *testing.T, mem *oci.Memory, raw []byte, extra http.HandlerFunc) (*registry.Client, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if strings.Contains(r.URL.Path, "/manifests/") {
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Write(raw)
			return
		}
		if extra != nil {
			extra(w, r)
			return
		}
		i := strings.LastIndex(r.URL.Path, "/")
		rc, err := mem.Blob(r.Context(), v1Desc(r.URL.Path[i+1:]))
		if err != nil {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, 404)
			return
		}
		defer rc.Close()
		http.ServeContent(w, r, "", time.Time{}, rc.(interface {
			Read([]byte) (int, error)
			Seek(int64, int) (int64, error)
		}))
	}))
	return clientFor(t, ts, "a/b"), &n
}

func TestHostileDescriptors(t *testing.T) {
	mem := oci.NewMemory()
	layer := mem.Add("application/vnd.oci.image.layer.v1.tar", []byte("real layer bytes"))
	cfg := mem.Add("application/vnd.oci.image.config.v1+json", []byte(`{"architecture":"amd64","os":"linux"}`))
	var followed atomic.Int64
	elsewhere := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed.Add(1) }))

	t.Run("huge size", func(t *testing.T) {
		raw := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[{"mediaType":%q,"digest":%q,"size":%d}]}`,
			cfg.MediaType, cfg.Digest, cfg.Size, layer.MediaType, layer.Digest, int64(1)<<62)
		c, _ := hostileManifestServer(t, mem, []byte(raw), nil)
		ref, err := c.Read(context.Background(), "v1")
		if err != nil {
			t.Fatal(err)
		}
		img := ref.(*oci.Image)
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = readAll(t, img, img.Layers()[0])
		if !errors.Is(err, oci.ErrSizeMismatch) {
			t.Fatalf("got %v, want ErrSizeMismatch", err)
		}
		if _, err := img.ReadBlob(context.Background(), img.Layers()[0], 1<<20); !errors.Is(err, oci.ErrTooLarge) {
			t.Errorf("ReadBlob: got %v, want ErrTooLarge", err)
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if grew := int64(after.TotalAlloc - before.TotalAlloc); grew > 64<<20 {
			t.Errorf("allocated %d bytes for a lying size", grew)
		}
	})
	t.Run("urls never followed", func(t *testing.T) {
		raw := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[{"mediaType":%q,"digest":%q,"size":%d,"urls":[%q]}]}`,
			cfg.MediaType, cfg.Digest, cfg.Size, layer.MediaType, layer.Digest, layer.Size, elsewhere.URL+"/layer")
		c, n := hostileManifestServer(t, mem, []byte(raw), nil)
		ref, err := c.Read(context.Background(), "v1")
		if err != nil {
			t.Fatal(err)
		}
		img := ref.(*oci.Image)
		b, err := readAll(t, img, img.Layers()[0])
		if err != nil || string(b) != "real layer bytes" {
			t.Fatalf("%q %v", b, err)
		}
		if followed.Load() != 0 || n.Load() != 2 {
			t.Errorf("urls followed %d times; registry saw %d requests", followed.Load(), n.Load())
		}
	})
	t.Run("nested too deep", func(t *testing.T) {
		var cur oci.Ref
		cur, _ = mem.NewImage(v1Manifest(cfg, layer))
		for i := 0; i < 8+3; i++ {
			next, err := mem.NewIndex(v1Index(cur.Descriptor()))
			if err != nil {
				t.Fatal(err)
			}
			cur = next
		}
		s := registry.NewServer()
		// AddRef refuses the chain (it walks it).
		if err := s.AddRef("deep/chain", "v1", cur); !errors.Is(err, oci.ErrTooLarge) {
			t.Errorf("AddRef: got %v, want ErrTooDeep", err)
		}
	})
}

func TestHostileChallenges(t *testing.T) {
	for name, header := range map[string]string{
		"huge parameter":      `Bearer realm="https://auth.example/token",service="` + strings.Repeat("x", 64<<10) + `"`,
		"unterminated":        `Bearer realm="https://auth.example/token`,
		"no realm":            `Bearer service="x"`,
		"realm not a URL":     `Bearer realm="not a url"`,
		"realm ftp":           `Bearer realm="ftp://auth.example/token"`,
		"thousands of params": "Bearer " + strings.Repeat(`a="b",`, 5000) + `realm="https://auth.example/t"`,
	} {
		t.Run(name, func(t *testing.T) {
			var n atomic.Int64
			c := clientFor(t, serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				w.Header().Set("WWW-Authenticate", header)
				w.WriteHeader(401)
			})), "a/b")
			start := time.Now()
			_, err := c.Read(context.Background(), "v1")
			if err == nil || !errors.Is(err, registry.ErrUnauthorized) && !errors.Is(err, registry.ErrProtocol) {
				t.Fatalf("got %v, want ErrUnauthorized or ErrProtocol", err)
			}
			if n.Load() != 1 || time.Since(start) > 5*time.Second {
				t.Errorf("%d requests in %v: a bad challenge must end the pull at once", n.Load(), time.Since(start))
			}
			if len(err.Error()) > 2000 {
				t.Errorf("error message of %d bytes", len(err.Error()))
			}
		})
	}
}

func TestTLSDowngradesRefused(t *testing.T) {
	t.Run("redirect to http", func(t *testing.T) {
		plain := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Error("the plain-HTTP redirect target was contacted")
		}))
		ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusTemporaryRedirect)
		}))
		t.Cleanup(ts.Close)
		c := clientFor(t, ts, "a/b")
		c.Registry().Scheme = "https"
		_, err := c.Read(context.Background(), "v1")
		if !errors.Is(err, registry.ErrProtocol) || !strings.Contains(err.Error(), "https to http") {
			t.Fatalf("got %v, want a refused downgrade", err)
		}
	})
	t.Run("plain-HTTP realm", func(t *testing.T) {
		ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="http://auth.invalid/token",service="s"`)
			w.WriteHeader(401)
		}))
		t.Cleanup(ts.Close)
		c := clientFor(t, ts, "a/b")
		c.Registry().Scheme = "https"
		c.Registry().Credentials = registry.StaticCredentials("u", "p")
		_, err := c.Read(context.Background(), "v1")
		if !errors.Is(err, registry.ErrProtocol) || !strings.Contains(err.Error(), "plain-HTTP token realm") {
			t.Fatalf("got %v, want a refused realm", err)
		}
	})
}

func TestErrorBodyCapped(t *testing.T) {
	huge := strings.Repeat("x", 10<<20)
	c := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, huge)
	})
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := c.Read(context.Background(), "v1")
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("got %v", err)
	}
	if len(err.Error()) > 2000 {
		t.Errorf("error message of %d bytes", len(err.Error()))
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Errorf("reading a 10 MiB error body allocated %d bytes", grew)
	}
}

func TestRetryAfterBeyondMaxRetryAfter(t *testing.T) {
	f := newFixture(t)
	f.inj.Add(faults.Rule{Path: "/manifests/", Fault: faults.Status(503, "300")})
	start := time.Now()
	_, err := f.c.Read(context.Background(), "img")
	var ce *registry.ClientError
	if !errors.As(err, &ce) || ce.RetryAfter != 300*time.Second {
		t.Fatalf("got %v, want a 503 ClientError with RetryAfter 300s", err)
	}
	if time.Since(start) > 5*time.Second || f.inj.Requests() != 1 { // the wait would be 300 s
		t.Errorf("%d requests in %v: a Retry-After beyond MaxRetryAfter must end the operation at once", f.inj.Requests(), time.Since(start))
	}
}

// TestManyResumesWithProgress: a long download over a connection that
// breaks every 100 KB resumes as often as it keeps moving (over 64 times),
// while one that breaks after every byte gives up.
func TestManyResumesWithProgress(t *testing.T) {
	t.Run("progressing", func(t *testing.T) {
		f := newFixture(t, 8<<20)
		f.inj.Add(faults.Rule{Path: "/blobs/", Times: 100, Fault: faults.CutAfter(100_000)})
		ref, err := f.c.Read(context.Background(), "img")
		if err != nil {
			t.Fatal(err)
		}
		img := ref.(*oci.Image)
		b, err := readAll(t, img, img.Layers()[0])
		if err != nil || digest.FromBytes(b) != img.Layers()[0].Digest {
			t.Fatalf("%v", err)
		}
		if n := f.inj.RequestsTo("/blobs/"); n < 80 {
			t.Errorf("only %d blob requests: the test wants more than 64 resumptions", n)
		}
	})
	t.Run("a byte at a time", func(t *testing.T) {
		f := newFixture(t, 1<<20)
		f.inj.Add(faults.Rule{Path: "/blobs/", Fault: faults.CutAfter(1)})
		ref, err := f.c.Read(context.Background(), "img")
		if err != nil {
			t.Fatal(err)
		}
		img := ref.(*oci.Image)
		_, err = readAll(t, img, img.Layers()[0])
		if err == nil || !strings.Contains(err.Error(), "gave up") {
			t.Fatalf("got %v, want the stream to give up", err)
		}
		t.Logf("%d requests: %v", f.inj.Requests(), err)
	})
}

// TestDripForeverGivesUp: a server that keeps every connection alive with a
// few bytes now and then but never gets anywhere is a stall: each
// connection is cut and resumed, and the read gives up with ErrStalled
// instead of holding the reader for days.
func TestDripForeverGivesUp(t *testing.T) {
	f := newFixture(t, 1<<20)
	f.c.Registry().StallTimeout = 50 * time.Millisecond
	f.inj.Add(faults.Rule{Path: "/blobs/", Fault: faults.Drip(0, 10, 10*time.Millisecond)})
	ref, err := f.c.Read(context.Background(), "img")
	if err != nil {
		t.Fatal(err)
	}
	img := ref.(*oci.Image)
	start := time.Now()
	b, err := readAll(t, img, img.Layers()[0])
	if !errors.Is(err, registry.ErrStalled) {
		t.Fatalf("got %v (%d bytes), want ErrStalled", err, len(b))
	}
	t.Logf("gave up after %v, %d requests: %v", time.Since(start).Round(time.Millisecond), f.inj.Requests(), err)
}

// TestHeadersStallGivesUp: a registry that never sends response headers
// fails, after the retry policy, with ErrStalled.
func TestHeadersStallGivesUp(t *testing.T) {
	f := newFixture(t)
	f.c.Registry().StallTimeout = 50 * time.Millisecond
	f.inj.Add(faults.Rule{Path: "/manifests/", Fault: faults.Stall(10 * time.Second)})
	if _, err := f.c.Read(context.Background(), "img"); !errors.Is(err, registry.ErrStalled) {
		t.Fatalf("got %v, want ErrStalled", err)
	}
}

func TestUnknownHostNotRetried(t *testing.T) {
	var dials atomic.Int64
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: "registry.invalid", IsNotFound: true}}
	}}
	c := (&registry.Registry{Host: "registry.invalid", Transport: tr, GetBackOff: fastBackOff}).Repository("a/b")
	_, err := c.Read(context.Background(), "v1")
	if err == nil || !strings.Contains(err.Error(), "no such host") {
		t.Fatalf("got %v", err)
	}
	if dials.Load() != 1 {
		t.Errorf("%d dials: a name that does not exist must not be retried", dials.Load())
	}
}

func TestOversizedTokenAndHeadersRefused(t *testing.T) {
	t.Run("token response", func(t *testing.T) {
		var base string
		ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/token" {
				io.WriteString(w, `{"token":"`+strings.Repeat("a", 2<<20)+`"}`)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+base+`/token",service="s"`)
			w.WriteHeader(http.StatusUnauthorized)
		}))
		base = ts.URL
		c := clientFor(t, ts, "a/b")
		c.Registry().Transport = nil // the client's own transport
		_, err := c.Read(context.Background(), "v1")
		if !errors.Is(err, oci.ErrTooLarge) {
			t.Fatalf("got %v, want ErrTooLarge for a 2 MiB token response", err)
		}
	})
	t.Run("response headers", func(t *testing.T) {
		ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < 40; i++ {
				w.Header().Set(fmt.Sprintf("X-Junk-%d", i), strings.Repeat("j", 64<<10))
			}
			w.WriteHeader(http.StatusOK)
		}))
		c := clientFor(t, ts, "a/b")
		c.Registry().Transport = nil // the client's own transport caps headers at 1 MiB
		c.Registry().GetBackOff = func() backoff.BackOff { return &backoff.StopBackOff{} }
		_, err := c.Read(context.Background(), "v1")
		if err == nil || !strings.Contains(err.Error(), "header") {
			t.Fatalf("got %v, want the 2.5 MiB of headers refused", err)
		}
	})
}
