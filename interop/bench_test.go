package interop

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// benchBlobSize is the layer the throughput benchmarks pull: large enough
// that per-request costs vanish, small enough for a 2-core CI machine.
const benchBlobSize = 256 << 20

type benchFixture struct {
	ts    *httptest.Server
	host  string
	img   *oci.Image
	layer ocispec.Descriptor
}

func newBenchFixture(b *testing.B) *benchFixture {
	b.Helper()
	mem := oci.NewMemory()
	data := make([]byte, benchBlobSize)
	rand.Read(data)
	layer := mem.Add(ocispec.MediaTypeImageLayer, data)
	cfg := mem.Add(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	img, err := mem.NewImage(context.Background(), ocispec.Manifest{Config: cfg, Layers: []ocispec.Descriptor{layer}})
	if err != nil {
		b.Fatal(err)
	}
	srv := registry.NewServer()
	if err := srv.AddRef("bench/img", "v1", img); err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	b.Cleanup(ts.Close)
	return &benchFixture{ts: ts, host: hostOf(b, ts), img: img, layer: layer}
}

// BenchmarkVerifiedBlob drains one large layer over loopback, verified, the
// way callers do (io.Copy into io.Discard), for our client and the peers,
// beside the limit: a raw GET hashed through a 1 MiB buffer.
func BenchmarkVerifiedBlob(b *testing.B) {
	f := newBenchFixture(b)
	ctx := context.Background()
	blobURL := f.ts.URL + "/v2/bench/img/blobs/" + string(f.layer.Digest)

	b.Run("limit-raw-get-sha256-1MiB", func(b *testing.B) {
		b.SetBytes(benchBlobSize)
		buf := make([]byte, 1<<20)
		for i := 0; i < b.N; i++ {
			resp, err := http.Get(blobURL)
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.CopyBuffer(h, struct{ io.Reader }{resp.Body}, buf); err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
		}
	})
	b.Run("ocipull-io.Copy", func(b *testing.B) {
		b.SetBytes(benchBlobSize)
		c := &registry.Client{Scheme: "http", Host: f.host, Repository: "bench/img"}
		for i := 0; i < b.N; i++ {
			rc, err := c.OpenBlob(ctx, f.layer)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
	b.Run("ggcr-io.Copy", func(b *testing.B) {
		b.SetBytes(benchBlobSize)
		ref, _ := name.NewDigest(f.host+"/bench/img@"+string(f.layer.Digest), name.Insecure)
		for i := 0; i < b.N; i++ {
			l, err := remote.Layer(ref)
			if err != nil {
				b.Fatal(err)
			}
			rc, err := l.Compressed()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
	b.Run("oras-io.Copy", func(b *testing.B) {
		b.SetBytes(benchBlobSize)
		repo, _ := orasremote.NewRepository(f.host + "/bench/img")
		repo.PlainHTTP = true
		for i := 0; i < b.N; i++ {
			rc, err := repo.Blobs().Fetch(ctx, f.layer)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
}
