package registry_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

// seen is what an endpoint received: one line per request.
type seen struct {
	mu   sync.Mutex
	reqs []seenRequest
}

type seenRequest struct {
	method, path, ns, auth string
}

// wrap records every request before passing it to next.
func (s *seen) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, seenRequest{r.Method, r.URL.Path, r.URL.Query().Get("ns"), r.Header.Get("Authorization")})
		s.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (s *seen) all() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.reqs...)
}

// count counts the requests whose path contains substr.
func (s *seen) count(substr string) int {
	n := 0
	for _, r := range s.all() {
		if strings.Contains(r.path, substr) {
			n++
		}
	}
	return n
}

func hostOf(t *testing.T, ts *httptest.Server) string {
	t.Helper()
	u, err := url.Parse(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// mirrorSetup is a registry and a mirror holding the same image.
type mirrorSetup struct {
	img                   *oci.Image
	regSeen, mirSeen      *seen
	registry, mirror      *httptest.Server
	mirrorFaults          *faults.Injector
	regHost, mirrorHost   string
	registrySrv, mirrorSv *registry.Server
}

func newMirrorSetup(t *testing.T, mirrorHandler func(http.Handler) http.Handler) *mirrorSetup {
	t.Helper()
	ms := &mirrorSetup{regSeen: &seen{}, mirSeen: &seen{}}
	ms.img = newImage(t, oci.NewMemory(), linuxAMD64, 3000, 4000, 5000, 6000)
	ms.registrySrv, ms.mirrorSv = registry.NewServer(), registry.NewServer()
	mustAdd(t, ms.registrySrv, "team/app", "v1", ms.img)
	mustAdd(t, ms.mirrorSv, "team/app", "v1", ms.img)
	ms.registry = serve(t, ms.regSeen.wrap(ms.registrySrv))
	ms.mirrorFaults = &faults.Injector{Next: ms.mirrorSv}
	var h http.Handler = ms.mirrorFaults
	if mirrorHandler != nil {
		h = mirrorHandler(h)
	}
	ms.mirror = serve(t, ms.mirSeen.wrap(h))
	ms.regHost, ms.mirrorHost = hostOf(t, ms.registry), hostOf(t, ms.mirror)
	return ms
}

func (ms *mirrorSetup) client(mirrors ...registry.Endpoint) *registry.Client {
	return (&registry.Registry{Scheme: "http", Host: ms.regHost, Mirrors: mirrors, GetBackOff: fastBackOff}).Repository("team/app")
}

// pullAll reads ref's manifest and every blob, verified.
func pullVerified(t *testing.T, c *registry.Client, reference string) (*oci.Image, error) {
	t.Helper()
	ctx := context.Background()
	ref, err := c.Read(ctx, reference)
	if err != nil {
		return nil, err
	}
	img := ref.(*oci.Image)
	for _, d := range append([]v1.Descriptor{img.Manifest().Config}, img.Layers()...) {
		if _, err := img.ReadBlob(ctx, d, 1<<20); err != nil {
			return nil, err
		}
	}
	return img, nil
}

func TestMirrorServesWhatItHasAndTheRegistryTheRest(t *testing.T) {
	ms := newMirrorSetup(t, nil)
	layers := ms.img.Layers()
	for _, l := range layers[1:3] {
		ms.mirrorFaults.Add(faults.Rule{Path: "/blobs/" + string(l.Digest), Fault: faults.Status(http.StatusNotFound, "")})
	}
	c := ms.client(registry.Endpoint{Scheme: "http", Host: ms.mirrorHost})
	img, err := pullVerified(t, c, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest() != ms.img.Digest() {
		t.Fatalf("digest %s, want %s", img.Digest(), ms.img.Digest())
	}
	// The registry served exactly the two blobs the mirror lacks.
	var regPaths []string
	for _, r := range ms.regSeen.all() {
		regPaths = append(regPaths, r.method+" "+r.path)
	}
	if len(regPaths) != 2 || ms.regSeen.count(string(layers[1].Digest)) != 1 || ms.regSeen.count(string(layers[2].Digest)) != 1 {
		t.Errorf("registry saw %q, want the two blobs the mirror lacks", regPaths)
	}
	// Every mirror request named the registry in ns.
	for _, r := range ms.mirSeen.all() {
		if r.ns != ms.regHost {
			t.Errorf("mirror request %s %s: ns=%q, want %q", r.method, r.path, r.ns, ms.regHost)
		}
	}
	if ms.mirSeen.count("/manifests/v1") != 1 {
		t.Errorf("mirror saw %d tag requests, want 1", ms.mirSeen.count("/manifests/v1"))
	}
}

func TestMirrorDownFallsThroughWithoutRetries(t *testing.T) {
	ms := newMirrorSetup(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	c := ms.client(registry.Endpoint{Scheme: "http", Host: dead})
	var retries int
	var mu sync.Mutex
	c.Registry().RetryNotify = func(error, time.Duration) { mu.Lock(); retries++; mu.Unlock() }
	if _, err := pullVerified(t, c, "v1"); err != nil {
		t.Fatal(err)
	}
	if retries != 0 {
		t.Errorf("%d retries against a mirror that is down, want 0 (fall through at once)", retries)
	}
	if n := ms.regSeen.count("/"); n != 6 {
		t.Errorf("registry saw %d requests, want 6 (manifest, config, 4 layers)", n)
	}
}

func TestMirrorWithPathPrefixAndNoFallback(t *testing.T) {
	ms := newMirrorSetup(t, func(h http.Handler) http.Handler { return http.StripPrefix("/cache/hub", h) })
	ep, err := registry.ParseEndpoint("http://" + ms.mirrorHost + "/cache/hub")
	if err != nil {
		t.Fatal(err)
	}
	if ep.Path != "/cache/hub/v2" {
		t.Fatalf("ParseEndpoint path %q, want /cache/hub/v2", ep.Path)
	}
	c := ms.client(ep)
	c.Registry().MirrorsOnly = true
	if _, err := pullVerified(t, c, "v1"); err != nil {
		t.Fatal(err)
	}
	if n := len(ms.regSeen.all()); n != 0 {
		t.Errorf("registry saw %d requests with MirrorsOnly, want 0", n)
	}
	for _, r := range ms.mirSeen.all() {
		if !strings.HasPrefix(r.path, "/cache/hub/v2/team/app/") {
			t.Errorf("mirror request path %q, want it under /cache/hub/v2/team/app/", r.path)
		}
	}
	// A blob the mirror lacks is an error naming the mirror; the
	// registry is still not asked.
	missing := ms.img.Layers()[0]
	ms.mirrorFaults.Add(faults.Rule{Path: "/blobs/" + string(missing.Digest), Fault: faults.Status(http.StatusNotFound, "")})
	_, err = c.OpenBlob(context.Background(), missing)
	if !errors.Is(err, registry.ErrNotFound) || !strings.Contains(err.Error(), ms.mirrorHost+"/cache/hub/v2/") {
		t.Errorf("missing blob on the only mirror: %v, want ErrNotFound naming the mirror's URL", err)
	}
	if n := len(ms.regSeen.all()); n != 0 {
		t.Errorf("registry saw %d requests with MirrorsOnly, want 0", n)
	}
}

func TestMirrorResolveCapability(t *testing.T) {
	ms := newMirrorSetup(t, nil)
	c := ms.client(registry.Endpoint{Scheme: "http", Host: ms.mirrorHost, Capabilities: registry.CapabilityPull})
	if _, err := pullVerified(t, c, "v1"); err != nil {
		t.Fatal(err)
	}
	if n := ms.mirSeen.count("/manifests/v1"); n != 0 {
		t.Errorf("a pull-only mirror was asked for a tag %d times", n)
	}
	if n := ms.regSeen.count("/manifests/v1"); n != 1 {
		t.Errorf("registry resolved the tag %d times, want 1", n)
	}
	if n := len(ms.regSeen.all()); n != 1 {
		t.Errorf("registry saw %d requests, want only the tag", n)
	}
	// Resolve by tag goes to the registry too; by digest to the mirror.
	if _, err := c.Resolve(context.Background(), "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resolve(context.Background(), string(ms.img.Digest())); err != nil {
		t.Fatal(err)
	}
	if n := ms.regSeen.count("/manifests/sha256:"); n != 0 {
		t.Errorf("registry was asked for a manifest by digest %d times, want 0", n)
	}
}

func TestMirrorGetsNoRegistryCredentials(t *testing.T) {
	ms := newMirrorSetup(t, nil)
	ms.registrySrv.Auth = &registry.ServerAuth{Users: map[string]registry.ServerUser{"alice": {Password: "s3cret", Repositories: []string{"*"}}}}
	// The mirror wants a login too, and nobody has one for it.
	ms.mirrorSv.Auth = &registry.ServerAuth{Users: map[string]registry.ServerUser{"bob": {Password: "other", Repositories: []string{"*"}}}}
	c := ms.client(registry.Endpoint{Scheme: "http", Host: ms.mirrorHost})
	c.Registry().AllowBasicOverHTTP = true
	var asked []string
	var mu sync.Mutex
	c.Registry().Credentials = registry.CredentialFunc(func(_ context.Context, host string) (registry.Credential, error) {
		mu.Lock()
		asked = append(asked, host)
		mu.Unlock()
		if host == ms.regHost {
			return registry.Credential{Username: "alice", Password: "s3cret"}, nil
		}
		return registry.Credential{}, nil
	})
	if _, err := pullVerified(t, c, "v1"); err != nil {
		t.Fatal(err)
	}
	secret := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	for _, r := range ms.mirSeen.all() {
		if strings.Contains(r.auth, secret) || strings.Contains(r.auth, "s3cret") {
			t.Errorf("mirror request %s %s carried the registry's credentials", r.method, r.path)
		}
	}
	if n := ms.mirSeen.count("/"); n == 0 {
		t.Error("the mirror was never tried")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(asked, " "), ms.mirrorHost) {
		t.Errorf("credentials were looked up for %q, want the mirror's host among them", asked)
	}
}

func TestErrorNamesEveryEndpointTried(t *testing.T) {
	ms := newMirrorSetup(t, nil)
	ms.mirrorFaults.Add(faults.Rule{Path: "/manifests/", Fault: faults.Status(http.StatusServiceUnavailable, "")})
	c := ms.client(registry.Endpoint{Scheme: "http", Host: ms.mirrorHost})
	_, err := c.Read(context.Background(), "nope")
	if !errors.Is(err, registry.ErrManifestUnknown) {
		t.Fatalf("got %v, want the registry's ErrManifestUnknown", err)
	}
	for _, want := range []string{ms.mirrorHost, "503", ms.regHost, "404"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestMirrorLyingManifestFallsThrough(t *testing.T) {
	ms := newMirrorSetup(t, nil)
	ms.mirrorFaults.Add(faults.Rule{Path: "/manifests/", Fault: faults.Corrupt()})
	c := ms.client(registry.Endpoint{Scheme: "http", Host: ms.mirrorHost})
	if _, err := c.Read(context.Background(), string(ms.img.Digest())); err != nil {
		t.Fatalf("a corrupt manifest from the mirror did not fall through to the registry: %v", err)
	}
	if n := ms.regSeen.count("/manifests/"); n != 1 {
		t.Errorf("registry saw %d manifest requests, want 1", n)
	}
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"mirror.example":               "https://mirror.example/v2",
		"http://10.0.0.5:5000":         "http://10.0.0.5:5000/v2",
		"https://m.example/prefix":     "https://m.example/prefix/v2",
		"https://m.example/prefix/v2/": "https://m.example/prefix/v2",
	} {
		ep, err := registry.ParseEndpoint(in)
		if err != nil || ep.String() != want {
			t.Errorf("ParseEndpoint(%q) = %v, %v; want %s", in, ep, err, want)
		}
	}
	for _, bad := range []string{"ftp://m.example", "https://user:pw@m.example", "https://m.example/?x=1", "https://", "https://bad host"} {
		if _, err := registry.ParseEndpoint(bad); !errors.Is(err, registry.ErrInvalidReference) {
			t.Errorf("ParseEndpoint(%q): %v, want ErrInvalidReference", bad, err)
		}
	}
}

func TestRateLimitHeadersRoundTrip(t *testing.T) {
	s := registry.NewServer()
	img := newImage(t, oci.NewMemory(), linuxAMD64, 1000)
	mustAdd(t, s, "library/app", "v1", img)
	limit := &faults.PullLimit{Next: s, Limit: 3, Window: 6 * time.Hour, Source: "192.0.2.7"}
	rec := &seen{}
	ts := serve(t, rec.wrap(limit))
	c := clientFor(t, ts, "library/app")
	ctx := context.Background()
	if _, ok := c.Registry().RateLimit(); ok {
		t.Fatal("RateLimit before any request")
	}
	for i := 0; i < 5; i++ {
		if _, err := c.Resolve(ctx, "v1"); err != nil {
			t.Fatal(err)
		}
	}
	rl, ok := c.Registry().RateLimit()
	if !ok || rl.Limit != 3 || rl.Remaining != 3 || rl.Window != 6*time.Hour || rl.Source != "192.0.2.7" {
		t.Fatalf("after 5 HEADs: %+v, %v; want 3 of 3 per 6h from 192.0.2.7 (HEAD is free)", rl, ok)
	}
	for i := 0; i < 3; i++ {
		if _, err := c.Read(ctx, "v1"); err != nil {
			t.Fatal(err)
		}
	}
	if rl, _ := c.Registry().RateLimit(); rl.Remaining != 0 {
		t.Fatalf("after 3 GETs: remaining %d, want 0", rl.Remaining)
	}
	_, err := c.Read(ctx, "v1")
	var ce *registry.ClientError
	if !errors.Is(err, registry.ErrTooManyRequests) || !errors.As(err, &ce) || ce.RateLimit == nil {
		t.Fatalf("4th GET: %v, want a ClientError with its RateLimit", err)
	}
	if ce.RateLimit.Limit != 3 || ce.RateLimit.Remaining != 0 || ce.RateLimit.Reset.Before(time.Now().Add(5*time.Hour)) {
		t.Errorf("429's rate limit %+v: want 0 of 3, resetting in about 6h", *ce.RateLimit)
	}
	if msg := err.Error(); !strings.Contains(msg, "0 of 3 pulls left") || !strings.Contains(msg, "resets at") {
		t.Errorf("429 message %q does not say the limit and when it resets", msg)
	}
	// Retry-After of hours is past MaxRetryAfter: one request, no waiting.
	if n := rec.count("/manifests/"); n != 9 {
		t.Errorf("server saw %d manifest requests, want 9 (5 HEAD, 4 GET)", n)
	}
}

// A hosts.toml host with override_path: the URL's path is the API root
// itself, without /v2 (for registries that serve it elsewhere).
func TestMirrorOverridePathFromHostsTOML(t *testing.T) {
	ms := newMirrorSetup(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rest, ok := strings.CutPrefix(r.URL.Path, "/custom/api/")
			if !ok {
				http.NotFound(w, r)
				return
			}
			r.URL.Path = "/v2/" + rest
			h.ServeHTTP(w, r)
		})
	})
	root := t.TempDir()
	writeFile(t, filepath.Join(root, strings.Replace(ms.regHost, ":", "_", 1)+"_", "hosts.toml"), []byte(`
[host."http://`+ms.mirrorHost+`/custom/api"]
  override_path = true
`))
	c := ms.client()
	if err := c.Registry().LoadHostsDir(root); err != nil {
		t.Fatal(err)
	}
	if _, err := pullVerified(t, c, "v1"); err != nil {
		t.Fatal(err)
	}
	if n := len(ms.regSeen.all()); n != 0 {
		t.Errorf("registry saw %d requests, want 0", n)
	}
	if n := ms.mirSeen.count("/custom/api/team/app/"); n != 6 {
		t.Errorf("mirror saw %d requests under /custom/api/team/app/, want 6: %v", n, ms.mirSeen.all())
	}
}

// StaticCredentials are the registry's: a mirror that asks for a login
// gets nothing from them and is passed over.
func TestStaticCredentialsStayWithTheRegistry(t *testing.T) {
	for _, basic := range []bool{false, true} {
		ms := newMirrorSetup(t, nil)
		ms.registrySrv.Auth = &registry.ServerAuth{Basic: basic, Users: map[string]registry.ServerUser{"alice": {Password: "s3cret", Repositories: []string{"*"}}}}
		ms.mirrorSv.Auth = &registry.ServerAuth{Basic: basic, Users: map[string]registry.ServerUser{"alice": {Password: "s3cret", Repositories: []string{"*"}}}}
		c := ms.client(registry.Endpoint{Scheme: "http", Host: ms.mirrorHost})
		c.Registry().Credentials = registry.StaticCredentials("alice", "s3cret")
		if _, err := pullVerified(t, c, "v1"); err != nil {
			t.Fatal(err)
		}
		secret := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
		for _, r := range ms.mirSeen.all() {
			if strings.Contains(r.auth, secret) {
				t.Errorf("basic=%v: mirror request %s %s carried StaticCredentials", basic, r.method, r.path)
			}
		}
		if ms.mirSeen.count("/") == 0 || ms.regSeen.count("/manifests/") == 0 {
			t.Errorf("basic=%v: mirror saw %d requests, registry %d manifest requests; want both asked", basic, ms.mirSeen.count("/"), ms.regSeen.count("/manifests/"))
		}
	}
	// IdentityToken likewise: the mirror's realm would take the refresh
	// token (a POST; nothing in Authorization), so only the registry
	// serving the manifest shows it stayed home.
	ms := newMirrorSetup(t, nil)
	robot := map[string]registry.ServerUser{"robot": {RefreshToken: "rt", Repositories: []string{"*"}}}
	ms.registrySrv.Auth, ms.mirrorSv.Auth = &registry.ServerAuth{Users: robot}, &registry.ServerAuth{Users: robot}
	c := ms.client(registry.Endpoint{Scheme: "http", Host: ms.mirrorHost})
	c.Registry().Credentials = registry.IdentityToken("rt")
	if _, err := pullVerified(t, c, "v1"); err != nil {
		t.Fatal(err)
	}
	for _, r := range ms.mirSeen.all() {
		if r.method == http.MethodPost {
			t.Errorf("the mirror's realm got a token request with the refresh token: %s %s", r.method, r.path)
		}
	}
	if ms.regSeen.count("/manifests/") == 0 {
		t.Error("the mirror served with the registry's identity token")
	}
}

// A mirror that serves wrong bytes for a blob fails that read (the bytes
// were already delivered) and is passed over for the blob afterwards;
// Layout.Write fetches a blob that did not verify once more, so a pull
// through such a mirror succeeds, the registry serving that one blob.
func TestMirrorWrongBlobBytesPassedOver(t *testing.T) {
	ms := newMirrorSetup(t, nil)
	bad := ms.img.Layers()[1]
	ms.mirrorFaults.Add(faults.Rule{Path: "/blobs/" + string(bad.Digest), Fault: faults.Corrupt()})
	ctx := context.Background()

	c := ms.client(registry.Endpoint{Scheme: "http", Host: ms.mirrorHost})
	ref, err := c.Read(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	img := ref.(*oci.Image)
	if _, err := img.ReadBlob(ctx, bad, 1<<20); !errors.Is(err, oci.ErrDigestMismatch) {
		t.Fatalf("first read through the lying mirror: got %v, want ErrDigestMismatch", err)
	}
	if _, err := img.ReadBlob(ctx, bad, 1<<20); err != nil {
		t.Fatalf("second read: %v, want the registry's bytes", err)
	}
	if n := ms.mirSeen.count(string(bad.Digest)); n != 1 {
		t.Errorf("mirror asked %d times for the blob it garbled, want 1", n)
	}

	// A fresh client, through Layout.Write: one pull, no error.
	ms.regSeen.reqs, ms.mirSeen.reqs = nil, nil
	c = ms.client(registry.Endpoint{Scheme: "http", Host: ms.mirrorHost})
	ref, err = c.Read(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(ctx, "v1", ref, nil); err != nil {
		t.Fatalf("pull through a mirror that garbles a blob: %v (bad %s; mirror %v, registry %v)", err, bad.Digest, ms.mirSeen.all(), ms.regSeen.all())
	}
	if n := ms.regSeen.count("/"); n != 1 || ms.regSeen.count(string(bad.Digest)) != 1 {
		t.Errorf("registry saw %v, want only the blob the mirror garbled", ms.regSeen.all())
	}
}

// A mirror that dies mid-blob: the stream goes on from the registry at
// the offset reached (cache item 18: `ocipull pull --mirror` failed
// instead), and the whole blob is verified.
func TestMirrorDyingMidBlobFallsThroughToRegistry(t *testing.T) {
	ms := newMirrorSetup(t, nil)
	layer := ms.img.Layers()[3]
	// The first blob GET is cut after 2,000 bytes; every later request
	// to the mirror for it (its resumption) gets 503.
	ms.mirrorFaults.Add(faults.Rule{Method: "GET", Path: string(layer.Digest), Nth: 1, Fault: faults.CutAfter(2000)})
	ms.mirrorFaults.Add(faults.Rule{Method: "GET", Path: string(layer.Digest), Fault: faults.Status(503, "")})
	ep, err := registry.ParseEndpoint(ms.mirror.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := ms.client(ep)
	ctx := context.Background()
	ref, err := c.Read(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(ctx, "v1", ref, nil); err != nil {
		t.Fatalf("pull with the mirror dying mid-blob: %v", err)
	}
	if n := ms.regSeen.count(string(layer.Digest)); n != 1 {
		t.Errorf("the registry saw %d requests for the layer, want 1 (the rest of it)", n)
	}
	if n := ms.regSeen.count("/manifests/"); n != 0 {
		t.Errorf("the registry saw %d manifest requests, want 0", n)
	}
}
