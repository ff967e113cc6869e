package mirror_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocipull/registry/internal/testwait"

	"github.com/cenkalti/backoff/v4"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/mirror"
	"github.com/ocipull/registry/oci"
)

// upstreamFixture is a registry the cache fills from: our Server behind
// the fault injector, with every request counted by method and path.
type upstreamFixture struct {
	img  *oci.Image
	srv  *registry.Server
	inj  *faults.Injector
	ts   *httptest.Server
	mu   sync.Mutex
	seen map[string]int // "GET /v2/..." -> count
	auth []string       // Authorization headers seen
}

func newUpstream(t *testing.T, layerSizes ...int) *upstreamFixture {
	t.Helper()
	mem := oci.NewMemory()
	img := newImage(t, mem, layerSizes...)
	srv := registry.NewServer()
	mustAdd(t, srv, "team/app", "v1", img)
	u := &upstreamFixture{img: img, srv: srv, inj: &faults.Injector{Next: srv}, seen: map[string]int{}}
	u.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen[r.Method+" "+r.URL.Path]++
		if a := r.Header.Get("Authorization"); a != "" {
			u.auth = append(u.auth, a)
		}
		u.mu.Unlock()
		u.inj.ServeHTTP(w, r)
	}))
	t.Cleanup(u.ts.Close)
	return u
}

func newImage(t testing.TB, mem *oci.Memory, layerSizes ...int) *oci.Image {
	t.Helper()
	cfg, err := mem.AddJSON(v1.MediaTypeImageConfig, v1.Image{Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
		RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		t.Fatal(err)
	}
	var layers []v1.Descriptor
	for _, n := range layerSizes {
		b := make([]byte, n)
		rand.Read(b)
		layers = append(layers, mem.Add(v1.MediaTypeImageLayerGzip, b))
	}
	img, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: layers})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func mustAdd(t testing.TB, s *registry.Server, repo, tag string, ref oci.Ref) {
	t.Helper()
	if err := s.AddRef(repo, tag, ref); err != nil {
		t.Fatalf("AddRef(%q, %q): %v", repo, tag, err)
	}
}

// count is how many requests with that method had a path containing sub.
func (u *upstreamFixture) count(method, sub string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for k, v := range u.seen {
		m, p, _ := strings.Cut(k, " ")
		if (method == "" || m == method) && strings.Contains(p, sub) {
			n += v
		}
	}
	return n
}

func (u *upstreamFixture) reset() {
	u.mu.Lock()
	u.seen = map[string]int{}
	u.mu.Unlock()
}

// newMirror serves a cache of ups (ns -> upstream) from dir.
func newMirror(t *testing.T, dir string, ups map[string]*upstreamFixture, tune func(*mirror.Config)) (*mirror.Cache, *httptest.Server) {
	t.Helper()
	cfg := mirror.Config{Upstreams: map[string]mirror.Upstream{}, Log: testLogger(t)}
	for ns, u := range ups {
		cfg.Upstreams[ns] = mirror.Upstream{URL: u.ts.URL}
	}
	if tune != nil {
		tune(&cfg)
	}
	m, err := mirror.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(m)
	t.Cleanup(func() { ts.Close(); m.Close() })
	return m, ts
}

// clientFor returns a client for repo on ts with fast retries.
func clientFor(t testing.TB, ts *httptest.Server, repo string) *registry.Client {
	t.Helper()
	u, err := url.Parse(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	return (&registry.Registry{Scheme: "http", Host: u.Host, GetBackOff: fastBackOff}).Repository(repo)
}

func fastBackOff() backoff.BackOff {
	return backoff.WithMaxRetries(backoff.NewConstantBackOff(5*time.Millisecond), 5)
}

func serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// mirrorPull reads ref through c and every blob, verified, returning the
// first error.
func mirrorPull(ctx context.Context, c *registry.Client, ref string) (oci.Ref, error) {
	got, err := c.Read(ctx, ref)
	if err != nil {
		return nil, err
	}
	img, ok := got.(*oci.Image)
	if !ok {
		return got, nil
	}
	for _, d := range img.Blobs() {
		rc, err := img.OpenBlob(ctx, d)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	return got, nil
}

func TestPullThroughAndWarm(t *testing.T) {
	up := newUpstream(t, 300_000, 20_000)
	dir := t.TempDir()
	m, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	c := clientFor(t, ms, "team/app")
	got, err := mirrorPull(context.Background(), c, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest() != up.img.Digest() {
		t.Fatalf("digest %s, want %s", got.Digest(), up.img.Digest())
	}
	for _, d := range up.img.Blobs() {
		if n := up.count("GET", string(d.Digest)); n != 1 {
			t.Errorf("blob %s: %d upstream GETs, want 1", d.Digest, n)
		}
	}
	// Warm: a second client pulls with no upstream request at all.
	up.reset()
	c2 := clientFor(t, ms, "team/app")
	if _, err := mirrorPull(context.Background(), c2, "v1"); err != nil {
		t.Fatal(err)
	}
	if n := up.count("", "/v2/"); n != 0 {
		t.Errorf("warm pull: %d upstream requests, want 0: %v", n, up.seen)
	}
	// The store is an OCI layout holding the tag by its full name (written
	// within a second, and at Close).
	m.Close()
	l, err := oci.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(up.ts.URL, "http://")
	if ref, err := l.Read(context.Background(), host+"/team/app:v1"); err != nil || ref.Digest() != up.img.Digest() {
		t.Errorf("store as a layout: %v", err)
	}
}

// TestCoalescesConcurrentPulls: N clients pull one image at once
// through a cold mirror; the upstream serves each blob once, and every
// client gets verified content. The upstream drips the big layer so the
// clients overlap with the fetch in flight and stream from it as it grows.
// OCIPULL_MIRROR_PROOF=1 runs the full size: 16 clients x 256 MiB.
func TestCoalescesConcurrentPulls(t *testing.T) {
	clients, size := 16, 8<<20
	if os.Getenv("OCIPULL_MIRROR_PROOF") != "" {
		size = 256 << 20
	}
	up := newUpstream(t, size, 10_000)
	big := up.img.Layers()[0]
	up.inj.Add(faults.Rule{Path: string(big.Digest), Fault: faults.Drip(0, 1<<20, 10*time.Millisecond)})
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clientFor(t, ms, "team/app")
			c.Registry().StallTimeout = 10 * time.Second
			_, err := mirrorPull(context.Background(), c, "v1")
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
	for _, d := range up.img.Blobs() {
		if n := up.count("GET", string(d.Digest)); n != 1 {
			t.Errorf("blob %s: %d upstream GETs for %d clients, want 1", d.Digest, n, clients)
		}
	}
	if n := up.count("GET", "/manifests/"); n > 2 {
		t.Errorf("%d upstream manifest GETs, want at most 2", n)
	}
}

// TestCutMidBlob: the upstream cuts the big layer mid-way while
// clients stream it; all complete, with one fetch plus resumes.
func TestCutMidBlob(t *testing.T) {
	up := newUpstream(t, 2<<20)
	big := up.img.Layers()[0]
	up.inj.Add(faults.Rule{Method: "GET", Path: string(big.Digest), Times: 1, Fault: faults.CutAfter(700_000)})
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
				failed.Store(err)
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	if n := up.count("GET", string(big.Digest)); n != 2 {
		t.Errorf("%d upstream GETs of the cut blob, want 2 (one fetch, one resume)", n)
	}
}

// TestCorruptUpstream: wrong bytes from upstream are never stored,
// every stream is cut, and the next request fetches afresh.
func TestCorruptUpstream(t *testing.T) {
	up := newUpstream(t, 1<<20)
	big := up.img.Layers()[0]
	up.inj.Add(faults.Rule{Method: "GET", Path: string(big.Digest), Times: 1, Fault: faults.Corrupt()})
	dir := t.TempDir()
	_, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	// Raw GETs see the stream cut, never a clean end.
	resp, err := http.Get(ms.URL + "/v2/team/app/blobs/" + string(big.Digest))
	if err != nil {
		t.Fatal(err)
	}
	b, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr == nil && resp.StatusCode == http.StatusOK && int64(len(b)) == big.Size {
		t.Fatal("corrupt content ended cleanly with the full length")
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", big.Digest.Encoded())); err == nil {
		t.Fatal("corrupt content was stored")
	}
	// The next pull fetches afresh and succeeds.
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	if n := up.count("GET", string(big.Digest)); n != 2 {
		t.Errorf("%d upstream GETs, want 2", n)
	}
}

// TestUpstreamDown: with the upstream gone, stored content and
// stale tags are served (marked with Warning); uncached content is a
// clear 5xx.
func TestUpstreamDown(t *testing.T) {
	up := newUpstream(t, 50_000)
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, func(c *mirror.Config) { c.TagTTL = time.Nanosecond })
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	up.ts.Close()
	c := clientFor(t, ms, "team/app")
	if _, err := mirrorPull(context.Background(), c, "v1"); err != nil {
		t.Fatalf("stale pull with the upstream down: %v", err)
	}
	resp, err := http.Get(ms.URL + "/v2/team/app/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Warning"), "110") {
		t.Errorf("stale tag: status %d, Warning %q", resp.StatusCode, resp.Header.Get("Warning"))
	}
	resp, err = http.Get(ms.URL + "/v2/team/app/manifests/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 500 {
		t.Errorf("uncached tag with the upstream down: status %d, want 5xx", resp.StatusCode)
	}
}

// TestUpstream404PassesThrough: an unknown tag upstream is a 404.
func TestUpstream404PassesThrough(t *testing.T) {
	up := newUpstream(t, 1000)
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	_, err := clientFor(t, ms, "team/app").Read(context.Background(), "nope")
	if !errors.Is(err, registry.ErrManifestUnknown) {
		t.Errorf("got %v, want ErrManifestUnknown", err)
	}
}

// TestNamespaces: ns selects the upstream, a path prefix does for
// clients that cannot send ns, docker.io names normalise, and an
// unconfigured ns is a 404 with no upstream traffic.
func TestNamespaces(t *testing.T) {
	a, b := newUpstream(t, 1000), newUpstream(t, 2000)
	hub := newUpstream(t, 3000)
	// Docker Hub's official images live under library/.
	srv := registry.NewServer()
	mustAdd(t, srv, "library/alpine", "3", hub.img)
	hub.inj.Next = srv
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": a, "ghcr.io": b, "docker.io": hub}, nil)
	get := func(path string) (int, string) {
		resp, err := http.Get(ms.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Docker-Content-Digest")
	}
	if code, d := get("/v2/team/app/manifests/v1"); code != 200 || d != string(a.img.Digest()) {
		t.Errorf("default: %d %s", code, d)
	}
	if code, d := get("/v2/team/app/manifests/v1?ns=ghcr.io"); code != 200 || d != string(b.img.Digest()) {
		t.Errorf("ns=ghcr.io: %d %s", code, d)
	}
	if code, d := get("/v2/ghcr.io/team/app/manifests/v1"); code != 200 || d != string(b.img.Digest()) {
		t.Errorf("path prefix: %d %s", code, d)
	}
	if code, d := get("/v2/alpine/manifests/3?ns=docker.io"); code != 200 || d != string(hub.img.Digest()) {
		t.Errorf("docker.io library/: %d %s", code, d)
	}
	if code, d := get("/v2/alpine/manifests/3?ns=index.docker.io"); code != 200 || d != string(hub.img.Digest()) {
		t.Errorf("index.docker.io: %d %s", code, d)
	}
	before := a.count("", "/") + b.count("", "/") + hub.count("", "/")
	if code, _ := get("/v2/team/app/manifests/v1?ns=evil.example:6666"); code != http.StatusNotFound {
		t.Errorf("unconfigured ns: status %d, want 404", code)
	}
	if after := a.count("", "/") + b.count("", "/") + hub.count("", "/"); after != before {
		t.Errorf("unconfigured ns caused %d upstream requests", after-before)
	}
}

// TestAuth: the mirror's clients authenticate with its ServerAuth;
// their Authorization never reaches the upstream, and upstream
// credentials never reach them.
func TestAuth(t *testing.T) {
	up := newUpstream(t, 1000)
	upAuth := &registry.ServerAuth{Users: map[string]registry.ServerUser{"mirror": {Password: "up-secret", Repositories: []string{"*"}}}}
	srv := registry.NewServer()
	srv.Auth = upAuth
	mustAdd(t, srv, "team/app", "v1", up.img)
	up.inj.Next = srv
	// Grants name the repository with its upstream.
	upHost := strings.TrimPrefix(up.ts.URL, "http://")
	m, err := mirror.Open(t.TempDir(), mirror.Config{
		Upstreams: map[string]mirror.Upstream{"": {URL: up.ts.URL, Credentials: registry.StaticCredentials("mirror", "up-secret")}},
		Auth:      &registry.ServerAuth{Users: map[string]registry.ServerUser{"client": {Password: "client-secret", Repositories: []string{upHost + "/team/app"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var leaked atomic.Bool
	ms := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, r)
		for k, vs := range rec.Header() {
			for _, v := range vs {
				if strings.Contains(v, "up-secret") || strings.Contains(v, "bWlycm9yOnVwLXNlY3JldA") {
					leaked.Store(true)
				}
				w.Header().Add(k, v)
			}
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(func() { m.Close() })
	anon := clientFor(t, ms, "team/app")
	if _, err := anon.Read(context.Background(), "v1"); !errors.Is(err, registry.ErrUnauthorized) {
		t.Errorf("anonymous: got %v, want ErrUnauthorized", err)
	}
	c := clientFor(t, ms, "team/app")
	c.Registry().Credentials = registry.StaticCredentials("client", "client-secret")
	if _, err := mirrorPull(context.Background(), c, "v1"); err != nil {
		t.Fatal(err)
	}
	up.mu.Lock()
	for _, a := range up.auth {
		if strings.Contains(a, "Y2xpZW50") || strings.Contains(a, "client") {
			t.Errorf("the client's Authorization reached the upstream: %q", a)
		}
	}
	up.mu.Unlock()
	if leaked.Load() {
		t.Error("upstream credentials reached the client")
	}
}

// TestEviction: past MaxSize the least recently served content goes
// and is fetched again on demand.
func TestEviction(t *testing.T) {
	up := newUpstream(t, 400_000, 400_000, 400_000)
	dir := t.TempDir()
	_, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, func(c *mirror.Config) { c.MaxSize = 900_000 })
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	var total int64
	ents, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	for _, e := range ents {
		if info, err := e.Info(); err == nil && !strings.HasSuffix(e.Name(), ".partial") {
			total += info.Size()
		}
	}
	if total > 900_000 {
		t.Errorf("store holds %d bytes, cap 900000", total)
	}
	resp, _ := http.Get(ms.URL + "/metrics")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "ocipull_mirror_evictions_total") || strings.Contains(string(b), "ocipull_mirror_evictions_total 0\n") {
		t.Errorf("metrics show no eviction:\n%s", b)
	}
	// Everything can still be pulled: evicted blobs come back.
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	// The items gauge, kept as items land and go, still counts what the
	// store holds.
	stored := 0
	ents, _ = os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".partial") {
			stored++
		}
	}
	if n := mirrorMetrics(t, ms)[`ocipull_mirror_store_items{kind="content"}`]; n != int64(stored) {
		t.Errorf("store items gauge %d, the store holds %d", n, stored)
	}
}

// TestRestartResumesPartial: a partial fetch left by a killed
// mirror is resumed with a Range request and verified as a whole; a
// garbled one is never served and is fetched afresh.
func TestRestartResumesPartial(t *testing.T) {
	up := newUpstream(t, 1<<20)
	big := up.img.Layers()[0]
	content, err := up.img.ReadBlob(context.Background(), big, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, garbled := range []bool{false, true} {
		t.Run(fmt.Sprintf("garbled=%v", garbled), func(t *testing.T) {
			up.reset()
			dir := t.TempDir()
			if _, err := oci.CreateLayout(dir); err != nil {
				t.Fatal(err)
			}
			prefix := append([]byte(nil), content[:400_000]...)
			if garbled {
				prefix[1000] ^= 0xff
			}
			os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755)
			if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", big.Digest.Encoded()+".partial"), prefix, 0o644); err != nil {
				t.Fatal(err)
			}
			_, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
			if garbled {
				// A raw GET, with no client to verify or retry: whatever
				// the timing (the mirror may find the partial garbled
				// before or after it starts streaming), a complete 200
				// body must be the blob's true content; a garbled one may
				// only arrive cut short (or the connection close before
				// any header).
				if resp, err := http.Get(ms.URL + "/v2/team/app/blobs/" + string(big.Digest)); err == nil {
					body, readErr := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK && readErr == nil && int64(len(body)) == big.Size && digest.FromBytes(body) != big.Digest {
						t.Fatal("content resumed from a garbled partial was served as complete")
					}
				}
				if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
					t.Fatalf("after the garbled partial: %v", err)
				}
				return
			}
			if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
				t.Fatal(err)
			}
			if n := up.count("GET", string(big.Digest)); n != 1 {
				t.Errorf("%d upstream GETs, want 1 (a resume)", n)
			}
		})
	}
}

// TestTwoCachesShareStore: two mirrors on one store directory fetch a blob
// once: the second streams the first one's growing partial file.
func TestTwoCachesShareStore(t *testing.T) {
	up := newUpstream(t, 4<<20)
	big := up.img.Layers()[0]
	up.inj.Add(faults.Rule{Path: string(big.Digest), Fault: faults.Drip(0, 512<<10, 20*time.Millisecond)})
	dir := t.TempDir()
	_, m1 := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	_, m2 := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, ms := range []*httptest.Server{m1, m2} {
		if i == 1 {
			// The second starts once the first is landing the big
			// layer, so that it must follow the first's landing.
			testwait.Until(t, "the first landing", func() bool {
				st, err := os.Stat(blobPath(dir, big.Digest) + ".partial")
				return err == nil && st.Size() > 0
			})
		}
		wg.Go(func() {
			c := clientFor(t, ms, "team/app")
			c.Registry().StallTimeout = 10 * time.Second
			_, err := mirrorPull(context.Background(), c, "v1")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := up.count("GET", string(big.Digest)); n != 1 {
		t.Errorf("%d upstream GETs for two mirrors sharing a store, want 1", n)
	}
}

// TestRangeOfFlight: a Range request joins the fetch in flight (the
// coalesced counter says it did, and the upstream sees one GET) and is
// answered as soon as its bytes landed, before the fetch completes.
func TestRangeOfFlight(t *testing.T) {
	up := newUpstream(t, 1<<20)
	big := up.img.Layers()[0]
	content, _ := up.img.ReadBlob(context.Background(), big, 2<<20)
	// The upstream sends 100 kB and then waits for the gate: the fetch is
	// still in flight when the Range request comes.
	gate := make(chan struct{})
	up.inj.Add(faults.Rule{Path: string(big.Digest), Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		next.ServeHTTP(&gatedWriter{ResponseWriter: w, after: 100_000, gate: gate}, r)
	})})
	dir := t.TempDir()
	_, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	rawGet(t, ms, "GET", "/v2/team/app/manifests/v1")
	first := make(chan error, 1)
	go func() {
		_, _, body, err := rawGet(t, ms, "GET", "/v2/team/app/blobs/"+string(big.Digest))
		if err == nil && digest.FromBytes(body) != big.Digest {
			err = errors.New("wrong bytes")
		}
		first <- err
	}()
	testwait.Until(t, "the fetch to be landing", func() bool {
		st, err := os.Stat(blobPath(dir, big.Digest) + ".partial")
		return err == nil && st.Size() > 0
	})
	// The Range request joins the fetch held at the gate (the counter
	// says so), and completes while the gate is still closed: its bytes
	// landed, and only the blob's last byte waits for the verification.
	type result struct {
		resp *http.Response
		body []byte
		err  error
	}
	ranged := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", ms.URL+"/v2/team/app/blobs/"+string(big.Digest), nil)
		req.Header.Set("Range", "bytes=1000-1999")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ranged <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		ranged <- result{resp, b, err}
	}()
	got := <-ranged
	close(gate)
	if got.err != nil || got.resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got.body, content[1000:2000]) {
		t.Fatalf("range: %v", got.err)
	}
	if cr := got.resp.Header.Get("Content-Range"); cr != "bytes 1000-1999/"+strconv.Itoa(len(content)) {
		t.Errorf("Content-Range %q", cr)
	}
	if err := <-first; err != nil {
		t.Fatalf("the full GET: %v", err)
	}
	if n := up.count("GET", string(big.Digest)); n != 1 {
		t.Errorf("%d upstream GETs, want 1", n)
	}
	if n := metric(t, ms, "ocipull_mirror_coalesced_total"); n != 1 {
		t.Errorf("coalesced_total %d, want 1 (the range joined the fetch)", n)
	}
}

// mirrorMetrics reads the mirror's /metrics into name → value.
func mirrorMetrics(t *testing.T, ms *httptest.Server) map[string]int64 {
	t.Helper()
	resp, err := http.Get(ms.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		n, err := strconv.ParseFloat(val, 64)
		if err != nil {
			t.Fatalf("metric line %q", line)
		}
		out[name] = int64(n) // sums of seconds are truncated; every count is whole
	}
	return out
}

// TestMetricsCount: the /metrics counters say what happened: a cold
// pull is misses and upstream traffic, a warm one hits only.
func TestMetricsCount(t *testing.T) {
	up := newUpstream(t, 3000, 5000)
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	var blobBytes int64
	for _, d := range up.img.Blobs() {
		blobBytes += d.Size
	}
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	cold := mirrorMetrics(t, ms)
	upstreamReqs := int64(up.count("", "/"))
	if cold["ocipull_mirror_upstream_requests_total"] != upstreamReqs {
		t.Errorf("upstream_requests_total %d, the upstream saw %d", cold["ocipull_mirror_upstream_requests_total"], upstreamReqs)
	}
	if cold["ocipull_mirror_misses_total"] < 4 || cold["ocipull_mirror_hits_total"] != 0 {
		t.Errorf("cold pull (tag, config, 2 layers): misses %d, hits %d", cold["ocipull_mirror_misses_total"], cold["ocipull_mirror_hits_total"])
	}
	if cold["ocipull_mirror_upstream_bytes_total"] < blobBytes || cold["ocipull_mirror_served_bytes_total"] < blobBytes ||
		cold["ocipull_mirror_store_bytes"] < blobBytes {
		t.Errorf("bytes: upstream %d, served %d, stored %d; the blobs are %d", cold["ocipull_mirror_upstream_bytes_total"],
			cold["ocipull_mirror_served_bytes_total"], cold["ocipull_mirror_store_bytes"], blobBytes)
	}
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	warm := mirrorMetrics(t, ms)
	if warm["ocipull_mirror_upstream_requests_total"] != cold["ocipull_mirror_upstream_requests_total"] ||
		warm["ocipull_mirror_misses_total"] != cold["ocipull_mirror_misses_total"] {
		t.Errorf("warm pull went upstream: requests %d → %d, misses %d → %d", cold["ocipull_mirror_upstream_requests_total"],
			warm["ocipull_mirror_upstream_requests_total"], cold["ocipull_mirror_misses_total"], warm["ocipull_mirror_misses_total"])
	}
	if warm["ocipull_mirror_hits_total"] < 4 || warm["ocipull_mirror_served_bytes_total"] < cold["ocipull_mirror_served_bytes_total"]+blobBytes {
		t.Errorf("warm pull: hits %d, served %d → %d", warm["ocipull_mirror_hits_total"], cold["ocipull_mirror_served_bytes_total"], warm["ocipull_mirror_served_bytes_total"])
	}
}

// testLogger sends the cache's log to the test's.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// gatedWriter passes the first after bytes of a body, then waits for gate.
type gatedWriter struct {
	http.ResponseWriter
	after, n int64
	gate     chan struct{}
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	if g.n+int64(len(p)) > g.after {
		if g.n < g.after {
			k, err := g.ResponseWriter.Write(p[:g.after-g.n])
			g.n += int64(k)
			if err != nil {
				return k, err
			}
			if f, ok := g.ResponseWriter.(http.Flusher); ok {
				f.Flush()
			}
			<-g.gate
			m, err := g.ResponseWriter.Write(p[k:])
			g.n += int64(m)
			return k + m, err
		}
		<-g.gate
	}
	k, err := g.ResponseWriter.Write(p)
	g.n += int64(k)
	return k, err
}

// TestMetricsByClassAndLatency: answers are counted by status class and
// timed into a histogram, one observation per request; upstream requests
// are timed per upstream, as many as the upstream saw; the Go runtime and
// process gauges are there under their usual names.
func TestMetricsByClassAndLatency(t *testing.T) {
	up := newUpstream(t, 1000)
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	for _, p := range []string{"/v2/team/app/manifests/v1", "/v2/team/app/manifests/v1", "/v2/", // 2xx
		"/v2/team/app/manifests/nope", "/v2/team/app/manifests/sha256:zz"} { // 4xx
		if _, _, _, err := rawGet(t, ms, "GET", p); err != nil {
			t.Fatal(err)
		}
	}
	m := mirrorMetrics(t, ms)
	if m[`ocipull_mirror_requests_total{class="2xx"}`] != 3 || m[`ocipull_mirror_requests_total{class="4xx"}`] != 2 ||
		m[`ocipull_mirror_requests_total{class="5xx"}`] != 0 {
		t.Errorf("by class: 2xx %d, 4xx %d, 5xx %d; want 3, 2, 0", m[`ocipull_mirror_requests_total{class="2xx"}`],
			m[`ocipull_mirror_requests_total{class="4xx"}`], m[`ocipull_mirror_requests_total{class="5xx"}`])
	}
	if n := m["ocipull_mirror_request_duration_seconds_count"]; n != 5 || m[`ocipull_mirror_request_duration_seconds_bucket{le="+Inf"}`] != 5 {
		t.Errorf("request latency: count %d, +Inf bucket %d; want 5", n, m[`ocipull_mirror_request_duration_seconds_bucket{le="+Inf"}`])
	}
	if m[`ocipull_mirror_request_duration_seconds_bucket{le="0.005"}`] > m[`ocipull_mirror_request_duration_seconds_bucket{le="60"}`] {
		t.Error("request latency buckets are not cumulative")
	}
	if m["go_goroutines"] < 1 || m["go_memstats_heap_alloc_bytes"] < 1 || m["process_start_time_seconds"] < time.Now().Add(-time.Hour).Unix() {
		t.Errorf("runtime metrics: goroutines %d, heap %d, start %d", m["go_goroutines"], m["go_memstats_heap_alloc_bytes"], m["process_start_time_seconds"])
	}
	if _, err := os.Stat("/proc/self/fd"); err == nil && m["process_open_fds"] < 3 {
		t.Errorf("process_open_fds %d, want at least stdin, stdout and stderr", m["process_open_fds"])
	}
	label := fmt.Sprintf(`{ns="",upstream=%q}`, strings.TrimPrefix(up.ts.URL, "http://"))
	if got, want := m["ocipull_mirror_upstream_request_duration_seconds_count"+label], int64(up.count("", "/")); got != want || want == 0 {
		t.Errorf("upstream latency count %s: %d, the upstream saw %d", label, got, want)
	}
}
