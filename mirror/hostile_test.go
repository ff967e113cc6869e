package mirror_test

// Regression tests for the cache as an adversary or an unlucky operator
// meets it, one per finding of the cache-trust review (RELIABILITY.md,
// "The pull-through cache under hostile input"). Each goes through the
// real path: a real listener in front of the Cache, a real upstream.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ocipull/registry/internal/testwait"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/mirror"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// rawGet GETs path on ts and returns the status, headers and body (the
// body read error too: a cut stream is one).
func rawGet(t *testing.T, ts *httptest.Server, method, path string, hdr ...string) (int, http.Header, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, rerr
}

// blobPath is where the layout keeps d (for tests that look at the disk).
func blobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// withManifest is an upstream that serves raw as the manifest of repo:tag
// (and by its digest) and passes everything else to next: a registry that
// accepted whatever its tenant pushed.
func withManifest(next http.Handler, repo, tag string, raw []byte) http.Handler {
	d := digest.FromBytes(raw)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/"+repo+"/manifests/"+tag || r.URL.Path == "/v2/"+repo+"/manifests/"+string(d) {
			w.Header().Set("Content-Type", v1.MediaTypeImageManifest)
			w.Header().Set("Docker-Content-Digest", string(d))
			w.Write(raw)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Item 1: a manifest GET by tag, then one of its layers through another
// repository name, crashed the process (a nil client in the fetch).
// Now the second request is a 404 (that repository does not hold it
// upstream) and the cache keeps serving.
func TestHostileLayerThroughOtherRepository(t *testing.T) {
	up := newUpstream(t, 10_000)
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	if code, _, _, _ := rawGet(t, ms, "GET", "/v2/team/app/manifests/v1"); code != 200 {
		t.Fatalf("manifest: %d", code)
	}
	layer := up.img.Layers()[0]
	code, _, _, err := rawGet(t, ms, "GET", "/v2/other/name/blobs/"+string(layer.Digest))
	if err != nil || code != http.StatusNotFound {
		t.Fatalf("layer through another repository: status %d, err %v; want 404", code, err)
	}
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatalf("the cache stopped serving: %v", err)
	}
}

// Item 1, the ordinary case: after a restart, the manifest stored and a
// layer not, a pull by digest works.
func TestHostileRestartWithManifestOnly(t *testing.T) {
	up := newUpstream(t, 10_000)
	dir := t.TempDir()
	m, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	if code, _, _, _ := rawGet(t, ms, "GET", "/v2/team/app/manifests/"+string(up.img.Digest())); code != 200 {
		t.Fatalf("manifest: %d", code)
	}
	ms.Close()
	m.Close()
	_, ms2 := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	if _, err := mirrorPull(context.Background(), clientFor(t, ms2, "team/app"), string(up.img.Digest())); err != nil {
		t.Fatalf("pull by digest after a restart: %v", err)
	}
}

// panickingStore fails its first blob landing with a panic.
type panickingStore struct {
	mirror.Store
	once sync.Once
}

func (s *panickingStore) WriteBlob(ctx context.Context, src oci.Source, desc v1.Descriptor, p func(oci.BlobProgress)) error {
	if desc.Data == nil {
		panicked := false
		s.once.Do(func() { panicked = true })
		if panicked {
			panic("store exploded")
		}
	}
	return s.Store.WriteBlob(ctx, src, desc, p)
}

// Item 1, the rule: a panic in a fetch fails that fetch only, is logged,
// and the process goes on.
func TestHostilePanicInFetchIsContained(t *testing.T) {
	up := newUpstream(t, 10_000)
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedBuffer{&mu, &logged}, nil))
	m, err := mirror.New(&panickingStore{Store: mirror.LayoutStore{Layout: l}},
		mirror.Config{Upstreams: map[string]mirror.Upstream{"": {URL: up.ts.URL}}, Log: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ms := serve(t, m)
	layer := up.img.Layers()[0]
	rawGet(t, ms, "GET", "/v2/team/app/manifests/v1")
	code, _, _, _ := rawGet(t, ms, "GET", "/v2/team/app/blobs/"+string(layer.Digest))
	if code < 500 {
		t.Errorf("the fetch that panicked: status %d, want 5xx", code)
	}
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatalf("after a panic: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logged.String(), "panic in a blob fetch") || !strings.Contains(logged.String(), "store exploded") {
		t.Errorf("the panic was not logged:\n%s", logged.String())
	}
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Item 2: a manifest GET naming the digest of a stored blob removed the
// blob. Now it is a 404 and the blob stays.
func TestHostileManifestGetOfBlobKeepsBlob(t *testing.T) {
	up := newUpstream(t, 10_000)
	dir := t.TempDir()
	_, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	layer := up.img.Layers()[0]
	for _, repo := range []string{"team/app", "any/name"} {
		code, _, _, _ := rawGet(t, ms, "GET", "/v2/"+repo+"/manifests/"+string(layer.Digest))
		if code != http.StatusNotFound {
			t.Errorf("%s: manifest GET of a blob's digest: status %d, want 404", repo, code)
		}
	}
	if _, err := os.Stat(blobPath(dir, layer.Digest)); err != nil {
		t.Fatalf("the blob is gone: %v", err)
	}
}

// Item 3: a manifest in an attacker's repository naming another tenant's
// layer with size 1 made the next GET of that layer delete the stored
// copy. Now the attacker's repository gets a 404 (its upstream
// repository lacks the layer) and the stored copy serves its owner.
func TestHostilePoisonedSizeLeavesStoredBlob(t *testing.T) {
	up := newUpstream(t, 50_000)
	layer := up.img.Layers()[0]
	poisoned, _ := json.Marshal(v1.Manifest{Versioned: specsV2, MediaType: v1.MediaTypeImageManifest,
		Config: up.img.Config(), Layers: []v1.Descriptor{{MediaType: v1.MediaTypeImageLayerGzip, Digest: layer.Digest, Size: 1}}})
	up.inj.Next = withManifest(up.srv, "attacker/app", "v1", poisoned)
	dir := t.TempDir()
	_, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	if code, _, _, _ := rawGet(t, ms, "GET", "/v2/attacker/app/manifests/v1"); code != 200 {
		t.Fatalf("attacker's manifest: %d", code)
	}
	code, _, body, _ := rawGet(t, ms, "GET", "/v2/attacker/app/blobs/"+string(layer.Digest))
	if code == 200 {
		t.Errorf("the attacker's repository was served another tenant's layer (%d bytes)", len(body))
	}
	if _, err := os.Stat(blobPath(dir, layer.Digest)); err != nil {
		t.Fatalf("the stored layer is gone: %v", err)
	}
	code, _, body, err := rawGet(t, ms, "GET", "/v2/team/app/blobs/"+string(layer.Digest))
	if err != nil || code != 200 || digest.FromBytes(body) != layer.Digest {
		t.Errorf("owner's GET: status %d, err %v", code, err)
	}
}

// Item 4: a client leaving during the first serve after a restart (its
// verification cancelled) deleted a good blob. Now cancellation and I/O
// errors leave it; only a proven mismatch removes it.
func TestHostileCancelledFirstServeKeepsBlob(t *testing.T) {
	up := newUpstream(t, 4<<20)
	dir := t.TempDir()
	m, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	ms.Close()
	m.Close()
	m2, err := mirror.Open(dir, mirror.Config{Upstreams: map[string]mirror.Upstream{"": {URL: up.ts.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	layer := up.img.Layers()[0]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest("GET", "/v2/team/app/blobs/"+string(layer.Digest), nil).WithContext(ctx)
	func() {
		defer func() { recover() }() // an aborted answer panics with http.ErrAbortHandler
		m2.ServeHTTP(httptest.NewRecorder(), req)
	}()
	if _, err := os.Stat(blobPath(dir, layer.Digest)); err != nil {
		t.Fatalf("a cancelled first serve removed the blob: %v", err)
	}
	// A proven mismatch does remove it, and the next request fetches it
	// again.
	if err := os.WriteFile(blobPath(dir, layer.Digest), bytes.Repeat([]byte{1}, int(layer.Size)), 0o644); err != nil {
		t.Fatal(err)
	}
	ms2 := serve(t, m2)
	code, _, body, err := rawGet(t, ms2, "GET", "/v2/team/app/blobs/"+string(layer.Digest))
	if err != nil || code != 200 || digest.FromBytes(body) != layer.Digest {
		t.Fatalf("after a garbled stored blob: status %d, err %v", code, err)
	}
}

// Item 5: the cache's own empty .partial (left by a fetch the upstream
// refused) was followed as another process's download: 200 and an
// aborted body, and the upstream's 404 lost from then on. Now every
// request gets the 404.
func TestHostileLeftoverPartialKeeps404(t *testing.T) {
	up := newUpstream(t, 10_000)
	missing := digest.FromString("a layer the upstream never had")
	raw, _ := json.Marshal(v1.Manifest{Versioned: specsV2, MediaType: v1.MediaTypeImageManifest,
		Config: up.img.Config(), Layers: []v1.Descriptor{{MediaType: v1.MediaTypeImageLayerGzip, Digest: missing, Size: 1234}}})
	up.inj.Next = withManifest(up.srv, "team/app", "broken", raw)
	dir := t.TempDir()
	_, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	if code, _, _, _ := rawGet(t, ms, "GET", "/v2/team/app/manifests/broken"); code != 200 {
		t.Fatalf("manifest: %d", code)
	}
	for i := range 3 {
		code, _, _, err := rawGet(t, ms, "GET", "/v2/team/app/blobs/"+string(missing))
		if err != nil || code != http.StatusNotFound {
			t.Errorf("request %d: status %d, err %v; want a clean 404", i+1, code, err)
		}
	}
}

// Item 6: with Auth, a user allowed one repository read another
// tenant's layer and manifest by digest through it (the store is keyed
// by digest alone), and HEAD revealed what anyone pulled. Now content is
// served for a repository only when that upstream repository holds it.
func TestHostileTenantsStayApart(t *testing.T) {
	up := newUpstream(t, 10_000)
	mem := oci.NewMemory()
	private := newImage(t, mem, 20_000)
	mustAdd(t, up.srv, "private/app", "v1", private)
	mustAdd(t, up.srv, "public/app", "v1", up.img)
	upHost := strings.TrimPrefix(up.ts.URL, "http://")
	m, err := mirror.Open(t.TempDir(), mirror.Config{
		Upstreams: map[string]mirror.Upstream{"": {URL: up.ts.URL}},
		Auth: &registry.ServerAuth{Users: map[string]registry.ServerUser{
			"alice": {Password: "a", Repositories: []string{upHost + "/public/app"}},
			"bob":   {Password: "b", Repositories: []string{upHost + "/private/app"}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ms := serve(t, m)
	bob := clientFor(t, ms, "private/app")
	bob.Registry().Credentials = registry.StaticCredentials("bob", "b")
	if _, err := mirrorPull(context.Background(), bob, "v1"); err != nil {
		t.Fatal(err)
	}
	aliceReg := clientFor(t, ms, "public/app").Registry()
	aliceReg.Credentials = registry.StaticCredentials("alice", "a")
	alice := aliceReg.Repository("public/app")
	ctx := context.Background()
	layer := private.Layers()[0]
	if _, err := alice.StatBlob(ctx, layer.Digest); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("alice's HEAD of bob's layer: %v, want not found", err)
	}
	if _, err := alice.OpenBlob(ctx, layer); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("alice's GET of bob's layer: %v, want not found", err)
	}
	if _, err := alice.Read(ctx, string(private.Digest())); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("alice's GET of bob's manifest: %v, want not found", err)
	}
	// Alice still pulls her own.
	if _, err := mirrorPull(ctx, alice, "v1"); err != nil {
		t.Fatal(err)
	}
}

// Item 6 without Auth: any name served any stored digest without asking
// the upstream whether that repository has it.
func TestHostileAnyNameAsksUpstream(t *testing.T) {
	up := newUpstream(t, 10_000)
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	up.reset()
	layer := up.img.Layers()[0]
	code, _, _, _ := rawGet(t, ms, "GET", "/v2/not/there/blobs/"+string(layer.Digest))
	if code != http.StatusNotFound {
		t.Errorf("stored layer through a repository the upstream lacks: %d, want 404", code)
	}
	if up.count("HEAD", "/v2/not/there/blobs/") != 1 {
		t.Errorf("the upstream was not asked: %v", up.seen)
	}
}

// Item 7: ns= got around the scope: a grant for team/app of the default
// upstream opened team/app of another upstream named with ns or a path
// prefix. Scopes now name the upstream.
func TestHostileNsDoesNotWidenScope(t *testing.T) {
	def, secret := newUpstream(t, 1000), newUpstream(t, 2000)
	defHost := strings.TrimPrefix(def.ts.URL, "http://")
	m, err := mirror.Open(t.TempDir(), mirror.Config{
		Upstreams: map[string]mirror.Upstream{"": {URL: def.ts.URL}, "secret.example": {URL: secret.ts.URL}},
		Auth: &registry.ServerAuth{Users: map[string]registry.ServerUser{
			"alice": {Password: "a", Repositories: []string{defHost + "/team/app"}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ms := serve(t, m)
	reg := clientFor(t, ms, "team/app").Registry()
	reg.Credentials = registry.StaticCredentials("alice", "a")
	if _, err := reg.Repository("team/app").Read(context.Background(), "v1"); err != nil {
		t.Fatalf("alice's own: %v", err)
	}
	if _, err := reg.Repository("secret.example/team/app").Read(context.Background(), "v1"); err == nil {
		t.Error("a path prefix naming another upstream was allowed")
	}
	// ns= the way containerd sends it, through an endpoint with ns.
	ep, _ := registry.ParseEndpoint(ms.URL)
	withNS := &registry.Registry{Host: "secret.example", Mirrors: []registry.Endpoint{ep}, MirrorsOnly: true,
		Credentials: registry.CredentialFunc(func(context.Context, string) (registry.Credential, error) {
			return registry.Credential{Username: "alice", Password: "a"}, nil
		})}
	if _, err := withNS.Repository("team/app").Read(context.Background(), "v1"); err == nil {
		t.Error("ns=secret.example was allowed on a grant for the default upstream's team/app")
	}
	if secret.count("", "/v2/team/app") != 0 {
		t.Errorf("the other upstream was asked: %v", secret.seen)
	}
}

// Item 12: flights were keyed by digest alone and ran with the first
// requester's repository: a request through a repository lacking the
// blob could fail a concurrent victim's pull. Now each repository's
// requests share only their own fetch.
func TestHostileOtherRepositoryCannotFailVictim(t *testing.T) {
	up := newUpstream(t, 1<<20)
	layer := up.img.Layers()[0]
	up.inj.Add(faults.Rule{Path: string(layer.Digest), Fault: faults.Drip(0, 128<<10, 5*time.Millisecond)})
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	for round := range 5 {
		ms2 := ms
		if round > 0 {
			_, ms2 = newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
		}
		if code, _, _, _ := rawGet(t, ms2, "GET", "/v2/team/app/manifests/v1"); code != 200 {
			t.Fatal(code)
		}
		var wg sync.WaitGroup
		wg.Go(func() { rawGet(t, ms2, "GET", "/v2/lacks/it/blobs/"+string(layer.Digest)) })
		var victim error
		wg.Go(func() { _, victim = mirrorPull(context.Background(), clientFor(t, ms2, "team/app"), "v1") })
		wg.Wait()
		if victim != nil {
			t.Fatalf("round %d: the victim's pull failed: %v", round, victim)
		}
	}
}

// Item 13: a fetch nobody follows any more was downloaded and stored to
// the end. Now it is cancelled after AbandonAfter; its landing stays for
// a later request to resume.
func TestHostileAbandonedFetchIsCancelled(t *testing.T) {
	up := newUpstream(t, 8<<20)
	layer := up.img.Layers()[0]
	up.inj.Add(faults.Rule{Path: string(layer.Digest), Fault: faults.Drip(0, 64<<10, 10*time.Millisecond)})
	upstreamGone := cancelledGets(up, layer.Digest)
	dir := t.TempDir()
	_, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, func(c *mirror.Config) { c.AbandonAfter = 50 * time.Millisecond })
	rawGet(t, ms, "GET", "/v2/team/app/manifests/v1")
	resp, err := http.Get(ms.URL + "/v2/team/app/blobs/" + string(layer.Digest))
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, 1000))
	resp.Body.Close()
	testwait.Until(t, "the upstream fetch to be cancelled", upstreamGone.Load)
	if _, err := os.Stat(blobPath(dir, layer.Digest)); err == nil {
		t.Fatal("the abandoned blob was stored in full")
	}
	// A later request resumes and completes.
	code, _, body, err := rawGet(t, ms, "GET", "/v2/team/app/blobs/"+string(layer.Digest))
	if err != nil || code != 200 || digest.FromBytes(body) != layer.Digest {
		t.Fatalf("after the abandoned fetch: %d %v", code, err)
	}
}

// Item 13: no cap on concurrent upstream fetches. Now one client may run
// MaxFetchesPerClient (beyond: 429), everyone MaxFetches (beyond: 503).
func TestHostileFetchCaps(t *testing.T) {
	up := newUpstream(t, 1<<20, 1<<20, 1<<20)
	for _, d := range up.img.Layers() {
		up.inj.Add(faults.Rule{Path: string(d.Digest), Fault: faults.Drip(0, 32<<10, 50*time.Millisecond)})
	}
	for _, tc := range []struct {
		name   string
		tune   func(*mirror.Config)
		status int
	}{
		{"per client", func(c *mirror.Config) { c.MaxFetchesPerClient = 1 }, http.StatusTooManyRequests},
		{"overall", func(c *mirror.Config) { c.MaxFetches = 1 }, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, tc.tune)
			_ = m
			rawGet(t, ms, "GET", "/v2/team/app/manifests/v1")
			ls := up.img.Layers()
			first, err := http.Get(ms.URL + "/v2/team/app/blobs/" + string(ls[0].Digest))
			if err != nil {
				t.Fatal(err)
			}
			defer first.Body.Close()
			code, h, _, _ := rawGet(t, ms, "GET", "/v2/team/app/blobs/"+string(ls[1].Digest))
			if code != tc.status || h.Get("Retry-After") == "" {
				t.Errorf("a second fetch beyond the cap: %d (Retry-After %q), want %d", code, h.Get("Retry-After"), tc.status)
			}
		})
	}
}

// Item 13: 100 connections that stopped reading held their goroutines
// and buffers forever. Now a client that accepts nothing for
// WriteTimeout is cut.
func TestHostileStalledReaderIsCut(t *testing.T) {
	up := newUpstream(t, 32<<20)
	layer := up.img.Layers()[0]
	m, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, func(c *mirror.Config) { c.WriteTimeout = 100 * time.Millisecond })
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", ms.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetReadBuffer(4096)
	}
	io.WriteString(conn, "GET /v2/team/app/blobs/"+string(layer.Digest)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	testwait.Until(t, "the stalled reader to be cut", func() bool { return metric(t, ms, "ocipull_mirror_aborted_total") >= 1 })
	_ = m
}

// metric reads one counter from /metrics.
func metric(t *testing.T, ms *httptest.Server, name string) int64 {
	return mirrorMetrics(t, ms)[name]
}

// Item 14: clients saw internals: a credential helper's stderr, upstream
// URLs, filesystem paths, UNSUPPORTED for an outage. Now they get a
// generic code and message; the log gets the cause.
func TestHostileErrorsRevealNothing(t *testing.T) {
	up := newUpstream(t, 1000)
	upAuth := &registry.ServerAuth{Users: map[string]registry.ServerUser{"m": {Password: "p", Repositories: []string{"*"}}}}
	up.srv.Auth = upAuth
	secret := "AKIAIOSFODNN7EXAMPLE arn:aws:iam::123456789012"
	helper := registry.CredentialFunc(func(context.Context, string) (registry.Credential, error) {
		return registry.Credential{}, errors.New("helper failed: " + secret)
	})
	dir := t.TempDir()
	m, err := mirror.Open(dir, mirror.Config{Upstreams: map[string]mirror.Upstream{"": {URL: up.ts.URL, Credentials: helper}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ms := serve(t, m)
	upHost := strings.TrimPrefix(up.ts.URL, "http://")
	check := func(what string, code int, body []byte) {
		t.Helper()
		for _, leak := range []string{secret, "AKIA", upHost, dir, "http://"} {
			if bytes.Contains(body, []byte(leak)) {
				t.Errorf("%s: the answer reveals %q: %s", what, leak, body)
			}
		}
		if bytes.Contains(body, []byte("UNSUPPORTED")) {
			t.Errorf("%s: UNSUPPORTED for an upstream failure: %s", what, body)
		}
	}
	code, _, body, _ := rawGet(t, ms, "GET", "/v2/team/app/manifests/v1")
	check("failing helper", code, body)
	up.ts.Close()
	code, _, body, _ = rawGet(t, ms, "GET", "/v2/team/other/manifests/v1")
	check("upstream down", code, body)
	if code != http.StatusServiceUnavailable {
		t.Errorf("upstream down: status %d, want 503", code)
	}
}

// Item 15: digest mismatches, refused connections and aborted answers
// were logged nowhere and counted nowhere. Now each is a log record
// with its cause, and counted.
func TestHostileFailuresAreLoggedAndCounted(t *testing.T) {
	up := newUpstream(t, 1<<20)
	layer := up.img.Layers()[0]
	// Corrupt, and dripped so that bytes reach the client before the
	// fetch fails its verification.
	corruptDrip := faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		faults.Corrupt().Serve(w, r, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			faults.Drip(0, 64<<10, 5*time.Millisecond).Serve(w, r, next)
		}))
	})
	up.inj.Add(faults.Rule{Method: "GET", Path: string(layer.Digest), Times: 1, Fault: corruptDrip})
	var mu sync.Mutex
	var logged bytes.Buffer
	m, err := mirror.Open(t.TempDir(), mirror.Config{Upstreams: map[string]mirror.Upstream{"": {URL: up.ts.URL}},
		Log: slog.New(slog.NewJSONHandler(lockedBuffer{&mu, &logged}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ms := serve(t, m)
	rawGet(t, ms, "GET", "/v2/team/app/manifests/v1")
	code, _, body, rerr := rawGet(t, ms, "GET", "/v2/team/app/blobs/"+string(layer.Digest))
	if rerr == nil && code == 200 && int64(len(body)) == layer.Size {
		t.Fatal("the corrupt stream ended cleanly")
	}
	testwait.Until(t, "the aborted request's log record", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(logged.String(), `"outcome":"aborted"`)
	})
	if got := metric(t, ms, "ocipull_mirror_verify_failures_total"); got != 1 {
		t.Errorf("verify_failures_total %d, want 1", got)
	}
	if got := metric(t, ms, "ocipull_mirror_upstream_errors_total"); got < 1 {
		t.Errorf("upstream_errors_total %d, want at least 1", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logged.String(), "blob fetch failed") || !strings.Contains(logged.String(), "digest") {
		t.Errorf("the mismatch was not logged with its cause:\n%s", logged.String())
	}
}

// Item 16: a black-holed upstream cost 30 s per request, every request,
// even for a tag the store could answer stale. Now the first timeout
// marks it down: the next requests answer from the store (or fail fast)
// without asking it.
func TestHostileBlackholedUpstreamIsRemembered(t *testing.T) {
	up := newUpstream(t, 1000)
	var hang atomic.Bool
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	inner := up.inj.Next
	up.inj.Next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		inner.ServeHTTP(w, r)
	})
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, func(c *mirror.Config) {
		c.TagTTL = time.Nanosecond
		u := c.Upstreams[""]
		u.Timeout, u.DownFor = 100*time.Millisecond, time.Hour
		c.Upstreams[""] = u
	})
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	hang.Store(true)
	up.reset()
	code, h, _, _ := rawGet(t, ms, "GET", "/v2/team/app/manifests/v1")
	if code != 200 || h.Get("Warning") == "" {
		t.Fatalf("first request after the upstream hung: %d, Warning %q; want a stale 200", code, h.Get("Warning"))
	}
	asked := up.count("", "/v2/")
	for range 5 {
		if code, _, _, _ := rawGet(t, ms, "GET", "/v2/team/app/manifests/v1"); code != 200 {
			t.Errorf("stale tag while down: %d", code)
		}
		if code, _, _, _ := rawGet(t, ms, "GET", "/v2/team/app/manifests/uncached"); code != http.StatusServiceUnavailable {
			t.Errorf("uncached tag while down: %d, want 503", code)
		}
	}
	if now := up.count("", "/v2/"); now != asked {
		t.Errorf("the upstream was asked %d more times while marked down", now-asked)
	}
}

// Item 17: the obvious first try, a client sending ns=<the default
// upstream's own host> (containerd, ocipull pull --mirror), got 404.
func TestHostileDefaultUpstreamAnswersItsOwnNs(t *testing.T) {
	up := newUpstream(t, 1000)
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	upHost := strings.TrimPrefix(up.ts.URL, "http://")
	if code, _, _, _ := rawGet(t, ms, "GET", "/v2/team/app/manifests/v1?ns="+upHost); code != 200 {
		t.Errorf("ns=%s: %d, want 200", upHost, code)
	}
	if code, _, _, _ := rawGet(t, ms, "GET", "/v2/team/app/manifests/v1?ns=elsewhere.example"); code != 404 {
		t.Errorf("ns=elsewhere.example: %d, want 404", code)
	}
}

// Item 10: a full disk wedged the cache. Now a landing that meets ENOSPC
// makes room and tries once more.
func TestHostileFullDiskEvictsAndRetries(t *testing.T) {
	first := newUpstream(t, 300_000)
	second := newUpstream(t, 300_000)
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &fullOnceStore{Store: mirror.LayoutStore{Layout: l}}
	m, err := mirror.New(store, mirror.Config{MaxSize: 1 << 20,
		Upstreams: map[string]mirror.Upstream{"": {URL: first.ts.URL}, "second.example": {URL: second.ts.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ms := serve(t, m)
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	store.full.Store(true)
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "second.example/team/app"), "v1"); err != nil {
		t.Fatalf("the second image with the disk full once: %v", err)
	}
	if got := metric(t, ms, "ocipull_mirror_evictions_total"); got == 0 {
		t.Error("no eviction on ENOSPC")
	}
}

// fullOnceStore fails one large landing with ENOSPC once full is set.
type fullOnceStore struct {
	mirror.Store
	full atomic.Bool
}

func (s *fullOnceStore) WriteBlob(ctx context.Context, src oci.Source, desc v1.Descriptor, p func(oci.BlobProgress)) error {
	if desc.Data == nil && desc.Size > 100_000 && s.full.CompareAndSwap(true, false) {
		return &os.PathError{Op: "write", Path: "x.partial", Err: syscall.ENOSPC}
	}
	return s.Store.WriteBlob(ctx, src, desc, p)
}

// Item 10: .partial files were neither counted nor removed. Now they
// count toward the store's size, and abandoned ones go first when the
// store is over its cap.
func TestHostileAbandonedPartialsCountAndExpire(t *testing.T) {
	up := newUpstream(t, 200_000)
	dir := t.TempDir()
	if _, err := oci.CreateLayout(dir); err != nil {
		t.Fatal(err)
	}
	stale := blobPath(dir, digest.FromString("abandoned")) + ".partial"
	os.MkdirAll(filepath.Dir(stale), 0o755)
	if err := os.WriteFile(stale, make([]byte, 900_000), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(stale, old, old)
	_, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, func(c *mirror.Config) { c.MaxSize = 1 << 20 })
	if got := metric(t, ms, "ocipull_mirror_store_bytes"); got != 900_000 {
		t.Errorf("store_bytes %d with a 900000-byte partial, want 900000", got)
	}
	if _, err := mirrorPull(context.Background(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("the abandoned partial file was kept over the cap")
	}
	for _, d := range up.img.Blobs() {
		if _, err := os.Stat(blobPath(dir, d.Digest)); err != nil {
			t.Errorf("%s was evicted instead of the abandoned partial", d.Digest)
		}
	}
}

// Item 11: concurrent evictions emptied the cache, evicted manifests
// stayed named in index.json, and a cap shared by processes was counted
// per process. Now: two caches on one store and cap, pulling at once,
// keep it within the cap (plus what is landing), never empty, and
// index.json names only stored manifests.
func TestHostileSharedCapEviction(t *testing.T) {
	ups := map[string]*upstreamFixture{}
	for _, ns := range []string{"", "b.example", "c.example", "d.example"} {
		ups[ns] = newUpstream(t, 300_000, 100_000)
	}
	dir := t.TempDir()
	const capBytes = 900_000
	tune := func(c *mirror.Config) { c.MaxSize = capBytes }
	m1, ms1 := newMirror(t, dir, ups, tune)
	m2, ms2 := newMirror(t, dir, ups, tune)
	var wg sync.WaitGroup
	for i, ns := range []string{"", "b.example", "c.example", "d.example"} {
		ms := ms1
		if i%2 == 1 {
			ms = ms2
		}
		repo := "team/app"
		if ns != "" {
			repo = ns + "/team/app"
		}
		wg.Go(func() {
			if _, err := mirrorPull(context.Background(), clientFor(t, ms, repo), "v1"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	m1.Close()
	m2.Close()
	var total int64
	var files int
	filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			info, _ := e.Info()
			total += info.Size()
			files++
		}
		return nil
	})
	if total > capBytes {
		t.Errorf("the store holds %d bytes, cap %d", total, capBytes)
	}
	if files == 0 {
		t.Error("eviction emptied the store")
	}
	l, err := oci.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := l.Index()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range idx.Manifests {
		if _, err := os.Stat(blobPath(dir, d.Digest)); err != nil {
			t.Errorf("index.json names %s, which is not stored", d.Digest)
		}
	}
}

var specsV2 = specs.Versioned{SchemaVersion: 2}

// Item 11: after an ordinary pull of one platform of an index, the cache
// directory named the index in index.json without its other children,
// and `ocipull serve` (which loads every manifest a tag names) refused
// it. Now a tag is recorded once its manifests are all stored.
func TestHostileCacheDirIsAlwaysServable(t *testing.T) {
	idx, err := ocitest.Build(ocitest.Spec{Seed: 9, Platforms: ocitest.Platforms("linux/amd64", "linux/arm64")})
	if err != nil {
		t.Fatal(err)
	}
	up := ocitest.NewRegistry(t, nil, map[string]oci.Ref{"team/app:v1": idx})
	dir := t.TempDir()
	m, err := mirror.Open(dir, mirror.Config{Upstreams: map[string]mirror.Upstream{"": {URL: up.HTTP.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	ms := serve(t, m)
	c := clientFor(t, ms, "team/app")
	servable := func(want int) {
		t.Helper()
		l, err := oci.OpenLayout(dir)
		if err != nil {
			t.Fatal(err)
		}
		ix, err := l.Index()
		if err != nil {
			t.Fatal(err)
		}
		if len(ix.Manifests) != want {
			t.Fatalf("index.json names %d manifests, want %d", len(ix.Manifests), want)
		}
		srv := registry.NewServer()
		for _, d := range ix.Manifests {
			ref, err := oci.LoadRef(context.Background(), l, d)
			if err == nil {
				err = srv.AddRef("x/y", "", ref)
			}
			if err != nil {
				t.Fatalf("the cache directory is not servable: %v", err)
			}
		}
	}
	if _, err := c.ReadPlatform(context.Background(), "v1", ocitest.Platforms("linux/amd64")[0]); err != nil {
		t.Fatal(err)
	}
	m.Close()
	servable(0) // the index, one child of two: not recorded
	m, err = mirror.Open(dir, mirror.Config{Upstreams: map[string]mirror.Upstream{"": {URL: up.HTTP.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	ms2 := serve(t, m)
	c = clientFor(t, ms2, "team/app")
	for _, p := range ocitest.Platforms("linux/amd64", "linux/arm64") {
		if _, err := c.ReadPlatform(context.Background(), "v1", p); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	servable(1) // both children stored: the tag is recorded
}

// cancelledGets reports, once it is true, that a GET of d from the
// upstream ended with its request cancelled (the mirror gave up on it).
func cancelledGets(up *upstreamFixture, d digest.Digest) *atomic.Bool {
	var gone atomic.Bool
	inner := up.inj.Next
	up.inj.Next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(w, r)
		if strings.Contains(r.URL.Path, string(d)) && r.Method == "GET" && r.Context().Err() != nil {
			gone.Store(true)
		}
	})
	return &gone
}

// slowToFailStore holds the first landing of blob that fails until
// release is closed (a landing that takes its time to wind down), and
// reports each later landing of blob on called.
type slowToFailStore struct {
	mirror.Store
	blob    digest.Digest
	calls   atomic.Int64
	called  chan struct{}
	release chan struct{}
}

func (s *slowToFailStore) WriteBlob(ctx context.Context, src oci.Source, desc v1.Descriptor, progress func(oci.BlobProgress)) error {
	if desc.Digest != s.blob {
		return s.Store.WriteBlob(ctx, src, desc, progress)
	}
	n := s.calls.Add(1)
	if n > 1 {
		s.called <- struct{}{}
	}
	err := s.Store.WriteBlob(ctx, src, desc, progress)
	if err != nil && n == 1 {
		<-s.release
	}
	return err
}

// TestAbandonedFetchNotJoined: a request that arrives while an abandoned
// fetch winds down (cancelled for want of followers, its landing not yet
// returned) starts a fetch of its own, which resumes the landing, and
// gets the whole blob — it does not join the dying fetch and have its
// response cut. The wind-down is held open by the store until the second
// request has either started a fetch or joined the first.
func TestAbandonedFetchNotJoined(t *testing.T) {
	up := newUpstream(t, 8<<20)
	layer := up.img.Layers()[0]
	up.inj.Add(faults.Rule{Path: string(layer.Digest), Times: 1, Fault: faults.Drip(0, 64<<10, 10*time.Millisecond)})
	upstreamGone := cancelledGets(up, layer.Digest)
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &slowToFailStore{Store: mirror.LayoutStore{Layout: l}, blob: layer.Digest, called: make(chan struct{}, 4), release: make(chan struct{})}
	m, err := mirror.New(store, mirror.Config{AbandonAfter: 50 * time.Millisecond, Log: testLogger(t),
		Upstreams: map[string]mirror.Upstream{"": {URL: up.ts.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ms := httptest.NewServer(m)
	defer ms.Close()
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(store.release) }) }
	defer release()
	path := "/v2/team/app/blobs/" + string(layer.Digest)
	rawGet(t, ms, "GET", "/v2/team/app/manifests/v1")
	resp, err := http.Get(ms.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, 1000))
	resp.Body.Close()
	testwait.Until(t, "the upstream fetch to be cancelled", upstreamGone.Load)

	type result struct {
		code int
		body []byte
		err  error
	}
	second := make(chan result, 1)
	go func() {
		code, _, b, err := rawGet(t, ms, "GET", path)
		second <- result{code, b, err}
	}()
	started := false
	testwait.Until(t, "the second request to start a fetch or join the dying one", func() bool {
		select {
		case <-store.called:
			started = true
			return true
		default:
		}
		return mirrorMetrics(t, ms)["ocipull_mirror_coalesced_total"] > 0
	})
	release()
	r := <-second
	if !started {
		t.Error("the second request joined the abandoned fetch")
	}
	if r.err != nil || r.code != 200 || digest.FromBytes(r.body) != layer.Digest {
		t.Fatalf("a request during the wind-down of an abandoned fetch: %d, %d bytes, %v", r.code, len(r.body), r.err)
	}
}
