package registry_test

import (
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// randomBytes returns n incompressible bytes.
func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// newImage builds an OCI image with the given layer sizes in mem.
func newImage(t testing.TB, mem *oci.Memory, p v1.Platform, layerSizes ...int) *oci.Image {
	t.Helper()
	cfg, err := mem.AddJSON(v1.MediaTypeImageConfig, v1.Image{Platform: p, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		t.Fatal(err)
	}
	var layers []v1.Descriptor
	for _, n := range layerSizes {
		layers = append(layers, mem.Add(v1.MediaTypeImageLayerGzip, randomBytes(t, n)))
	}
	img, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: layers})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

var (
	linuxAMD64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	linuxARM64 = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	linuxARMv7 = v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
)

// newIndex builds a 3-platform index (amd64, arm64/v8, arm/v7) of
// images with two layers, distinct for each call; mem is not used (the
// index carries its own source).
func newIndex(t testing.TB, _ *oci.Memory) *oci.Index {
	t.Helper()
	ref, err := ocitest.Build(ocitest.Spec{Seed: indexSeed.Add(1), Layers: 2, LayerSize: 1500,
		Platforms: []v1.Platform{linuxAMD64, linuxARM64, linuxARMv7}})
	if err != nil {
		t.Fatal(err)
	}
	return ref.(*oci.Index)
}

var indexSeed atomic.Uint64

// serve starts an httptest server for h, closed at cleanup.
func serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// clientFor returns a client for repo on ts with fast retries.
func clientFor(t testing.TB, ts *httptest.Server, repo string) *registry.Client {
	t.Helper()
	u, err := url.Parse(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	return (&registry.Registry{
		Scheme:     "http",
		Host:       u.Host,
		Transport:  ts.Client().Transport,
		GetBackOff: fastBackOff,
	}).Repository(repo)
}

func fastBackOff() backoff.BackOff {
	return backoff.WithMaxRetries(backoff.NewConstantBackOff(5*time.Millisecond), 5)
}

func mustAdd(t testing.TB, s *registry.Server, repo, tag string, ref oci.Ref) {
	t.Helper()
	if err := s.AddRef(repo, tag, ref); err != nil {
		t.Fatalf("AddRef(%q, %q): %v", repo, tag, err)
	}
}

func v1Desc(d string) v1.Descriptor { return v1.Descriptor{Digest: digest.Digest(d)} }

func v1Manifest(cfg v1.Descriptor, layers ...v1.Descriptor) v1.Manifest {
	return v1.Manifest{Config: cfg, Layers: layers}
}

func v1Index(ms ...v1.Descriptor) v1.Index { return v1.Index{Manifests: ms} }

// joinRef forms the reference Client.Read takes from a tag and a digest.
func joinRef(tag, dgst string) string {
	if tag != "" && dgst != "" {
		return tag + "@" + dgst
	}
	return tag + dgst
}

// errorBody is a registry error body as the spec defines it.
type errorBody struct {
	Errors []registry.ErrorInfo `json:"errors"`
}
