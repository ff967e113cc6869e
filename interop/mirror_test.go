package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocipull/registry/mirror"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orascontent "oras.land/oras-go/v2/content"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// tokenRegistry starts the reference registry with token auth (a token
// server of ours on the same host and port) and returns it and the
// issuer.
func tokenRegistry(t testing.TB) (*httptest.Server, *tokenIssuer) {
	t.Helper()
	rr, ti, _ := tokenRegistryCounting(t)
	return rr, ti
}

// tokenRegistryCounting is tokenRegistry, also counting the connections
// clients open to it.
func tokenRegistryCounting(t testing.TB) (*httptest.Server, *tokenIssuer, *atomic.Int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ti := &tokenIssuer{key: key, user: "tok", pass: "tok-pw", issuer: "interop-issuer", kid: "interop-key", service: "interop-registry"}
	mux := http.NewServeMux()
	mux.Handle("/token", ti)
	conns := &atomic.Int64{}
	rr := httptest.NewUnstartedServer(mux)
	rr.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	rr.Start()
	t.Cleanup(rr.Close)
	jwksPath := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksPath, ti.jwks(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &configuration.Configuration{}
	cfg.Storage = configuration.Storage{"inmemory": configuration.Parameters{}}
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true
	cfg.Auth = configuration.Auth{"token": configuration.Parameters{
		"realm": rr.URL + "/token", "service": ti.service, "issuer": ti.issuer, "jwks": jwksPath,
	}}
	mux.Handle("/", handlers.NewApp(context.Background(), cfg))
	return rr, ti, conns
}

// countingHandler counts blob GETs and body bytes by path.
type countingHandler struct {
	next     http.Handler
	mu       sync.Mutex
	blobGets map[string]int
	bytes    atomic.Int64
}

func (c *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
		c.mu.Lock()
		c.blobGets[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
		c.mu.Unlock()
	}
	c.next.ServeHTTP(&countingWriter{ResponseWriter: w, n: &c.bytes}, r)
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// TestMirrorOfReferenceRegistry: the reference registry (token auth) as
// upstream; our client, go-containerregistry, oras-go and skopeo pull
// through the mirror with digests unchanged.
func TestMirrorOfReferenceRegistry(t *testing.T) {
	rr, ti := tokenRegistry(t)
	host := hostOf(t, rr)
	c := makeContent(t, false)
	push(t, host, "tok/content", c, &authn.Basic{Username: ti.user, Password: ti.pass})
	m, err := mirror.Open(t.TempDir(), mirror.Config{Upstreams: map[string]mirror.Upstream{
		"": {URL: rr.URL, Credentials: registry.StaticCredentials(ti.user, ti.pass)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ms := httptest.NewServer(m)
	defer ms.Close()
	defer m.Close()
	mhost := hostOf(t, ms)
	ctx := context.Background()

	t.Run("ocipull", func(t *testing.T) {
		cl := (&registry.Registry{Scheme: "http", Host: mhost}).Repository("tok/content")
		for tag, img := range c.images {
			want, _ := img.Digest()
			ref, err := cl.Read(ctx, tag+"@"+want.String())
			if err != nil {
				t.Fatalf("%s: %v", tag, err)
			}
			im := ref.(*oci.Image)
			for _, d := range im.Blobs() {
				if got := drain(t, im, d); got != d.Digest {
					t.Errorf("%s: blob %s drained as %s", tag, d.Digest, got)
				}
			}
		}
		want, _ := c.indexes["multi"].Digest()
		ref, err := cl.Read(ctx, "multi")
		if err != nil || ref.Digest().String() != want.String() {
			t.Errorf("index: %v (digest %v, want %s)", err, ref, want)
		}
	})
	t.Run("ggcr", func(t *testing.T) {
		for tag, img := range c.images {
			ref, _ := name.ParseReference(mhost+"/tok/content:"+tag, name.Insecure)
			got, err := remote.Image(ref)
			if err != nil {
				t.Fatalf("%s: %v", tag, err)
			}
			gd, _ := got.Digest()
			wd, _ := img.Digest()
			if gd != wd {
				t.Errorf("%s: digest %s, want %s", tag, gd, wd)
			}
			layers, _ := got.Layers()
			for _, l := range layers {
				rc, err := l.Compressed()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					t.Fatalf("%s: layer: %v", tag, err)
				}
				rc.Close()
			}
		}
	})
	t.Run("oras", func(t *testing.T) {
		repo, _ := orasremote.NewRepository(mhost + "/tok/content")
		repo.PlainHTTP = true
		desc, rc, err := repo.FetchReference(ctx, "oci")
		if err != nil {
			t.Fatal(err)
		}
		raw, err := orascontent.ReadAll(rc, desc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := c.images["oci"].Digest()
		if desc.Digest.String() != want.String() {
			t.Errorf("digest %s, want %s", desc.Digest, want)
		}
		mf, err := oci.NewRef(nil, raw, desc.MediaType, desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range mf.(*oci.Image).Blobs() {
			rc, err := repo.Blobs().Fetch(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := orascontent.ReadAll(rc, d); err != nil {
				t.Fatalf("blob %s: %v", d.Digest, err)
			}
			rc.Close()
		}
	})
	t.Run("skopeo", func(t *testing.T) {
		bin, err := exec.LookPath("skopeo")
		if err != nil {
			t.Skip("skopeo not installed")
		}
		dst := filepath.Join(t.TempDir(), "layout")
		cmd := exec.Command(bin, "copy", "--src-tls-verify=false", "--preserve-digests", "docker://"+mhost+"/tok/content:oci", "oci:"+dst+":oci")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("skopeo: %v\n%s", err, out)
		}
		l, err := oci.OpenLayout(dst)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := l.Read(ctx, "oci")
		want, _ := c.images["oci"].Digest()
		if err != nil || ref.Digest().String() != want.String() {
			t.Errorf("skopeo layout: %v", err)
		}
	})
}

// coldPulls runs n concurrent pulls of the image tag (manifest and every
// blob, verified) from host/repo.
func coldPulls(t testing.TB, host, repo, tag string, n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := (&registry.Registry{Scheme: "http", Host: host, StallTimeout: time.Minute}).Repository(repo)
			ref, err := cl.Read(context.Background(), tag)
			if err != nil {
				errs <- err
				return
			}
			im := ref.(*oci.Image)
			for _, d := range im.Blobs() {
				rc, err := im.OpenBlob(context.Background(), d)
				if err != nil {
					errs <- err
					return
				}
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
				if err != nil {
					errs <- fmt.Errorf("blob %s: %w", d.Digest, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// upstreamForProxies is the reference registry holding one image with a
// large layer, counted.
func upstreamForProxies(t testing.TB, layerSize int64) (*httptest.Server, *countingHandler, ocispec.Descriptor) {
	t.Helper()
	mem := oci.NewMemory()
	data := make([]byte, layerSize)
	rand.Read(data)
	layer := mem.Add(ocispec.MediaTypeImageLayer, data)
	cfg := mem.Add(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	img, err := mem.NewImage(ocispec.Manifest{Config: cfg, Layers: []ocispec.Descriptor{layer}})
	if err != nil {
		t.Fatal(err)
	}
	srv := registry.NewServer()
	if err := srv.AddRef("proxy/img", "v1", img); err != nil {
		t.Fatal(err)
	}
	ch := &countingHandler{next: srv, blobGets: map[string]int{}}
	up := httptest.NewServer(ch)
	t.Cleanup(up.Close)
	return up, ch, layer
}

// TestColdPullsThroughProxies: 16 concurrent cold pulls of one image with
// a large layer, through our mirror and through the reference registry's
// own proxy mode: the upstream serves the layer once to ours; the
// reference fetches it once per concurrent client (its documented
// behaviour). OCIPULL_MIRROR_PROOF=1 uses a 256 MiB layer.
func TestColdPullsThroughProxies(t *testing.T) {
	size := int64(16 << 20)
	if os.Getenv("OCIPULL_MIRROR_PROOF") != "" {
		size = 256 << 20
	}
	const clients = 16
	t.Run("ocipull mirror", func(t *testing.T) {
		up, ch, layer := upstreamForProxies(t, size)
		m, err := mirror.Open(t.TempDir(), mirror.Config{Upstreams: map[string]mirror.Upstream{"": {URL: up.URL}}})
		if err != nil {
			t.Fatal(err)
		}
		ms := httptest.NewServer(m)
		defer ms.Close()
		defer m.Close()
		if err := coldPulls(t, hostOf(t, ms), "proxy/img", "v1", clients); err != nil {
			t.Fatal(err)
		}
		gets := ch.blobGets[string(layer.Digest)]
		t.Logf("ocipull mirror: %d upstream GETs of the layer, %d upstream bytes for %d clients", gets, ch.bytes.Load(), clients)
		if gets != 1 {
			t.Errorf("%d upstream GETs of the layer, want 1", gets)
		}
	})
	t.Run("reference proxy", func(t *testing.T) {
		up, ch, layer := upstreamForProxies(t, size)
		cfg := &configuration.Configuration{}
		cfg.Storage = configuration.Storage{"inmemory": configuration.Parameters{}}
		cfg.Log.Level = "error"
		cfg.Log.AccessLog.Disabled = true
		cfg.Proxy = configuration.Proxy{RemoteURL: up.URL}
		ps := httptest.NewServer(handlers.NewApp(context.Background(), cfg))
		defer ps.Close()
		if err := coldPulls(t, hostOf(t, ps), "proxy/img", "v1", clients); err != nil {
			t.Fatal(err)
		}
		gets := ch.blobGets[string(layer.Digest)]
		t.Logf("reference proxy: %d upstream GETs of the layer, %d upstream bytes for %d clients", gets, ch.bytes.Load(), clients)
	})
}
