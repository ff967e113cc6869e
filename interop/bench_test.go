package interop

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orascontent "oras.land/oras-go/v2/content"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// benchBlobMiB is the large layer's size: 1 GiB by default, as in the
// issue; OCIPULL_BENCH_BLOB_MIB makes it smaller for a quick run.
func benchBlobMiB() int64 {
	if v, err := strconv.Atoi(os.Getenv("OCIPULL_BENCH_BLOB_MIB")); err == nil && v > 0 {
		return int64(v)
	}
	return 1024
}

// counting wraps a handler to count requests and TCP connections.
type counting struct {
	h        http.Handler
	requests atomic.Int64
	conns    atomic.Int64
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.requests.Add(1)
	c.h.ServeHTTP(w, r)
}

func startCounting(b testing.TB, h http.Handler) (*httptest.Server, *counting) {
	b.Helper()
	c := &counting{h: h}
	ts := httptest.NewUnstartedServer(c)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			c.conns.Add(1)
		}
	}
	ts.Start()
	b.Cleanup(ts.Close)
	return ts, c
}

type imageFixture struct {
	ts     *httptest.Server
	count  *counting
	host   string
	img    *oci.Image
	layers []ocispec.Descriptor
}

func newImageFixture(b testing.TB, layerSizes ...int64) *imageFixture {
	b.Helper()
	mem := oci.NewMemory()
	var layers []ocispec.Descriptor
	for _, n := range layerSizes {
		data := make([]byte, n)
		rand.Read(data)
		layers = append(layers, mem.Add(ocispec.MediaTypeImageLayer, data))
	}
	cfg := mem.Add(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	img, err := mem.NewImage(ocispec.Manifest{Config: cfg, Layers: layers})
	if err != nil {
		b.Fatal(err)
	}
	srv := registry.NewServer()
	if err := srv.AddRef("bench/img", "v1", img); err != nil {
		b.Fatal(err)
	}
	ts, count := startCounting(b, srv)
	return &imageFixture{ts: ts, count: count, host: hostOf(b, ts), img: img, layers: layers}
}

// drainTo is how callers read: io.Copy into io.Discard, or into a file.
func drainTo(b *testing.B, dst string) (io.Writer, func()) {
	if dst == "discard" {
		return io.Discard, func() {}
	}
	f, err := os.Create(filepath.Join(b.TempDir(), "blob"))
	if err != nil {
		b.Fatal(err)
	}
	return f, func() { f.Seek(0, io.SeekStart); f.Truncate(0) }
}

// BenchmarkVerifiedBlob drains one large layer over loopback, verified, the
// way callers do (io.Copy into io.Discard and into an *os.File), for our
// client and the peers, beside the limit: a raw GET hashed through a 1 MiB
// buffer. Peers are also measured through a 1 MiB buffer.
func BenchmarkVerifiedBlob(b *testing.B) {
	size := benchBlobMiB() << 20
	f := newImageFixture(b, size)
	layer := f.layers[0]
	ctx := context.Background()
	blobURL := f.ts.URL + "/v2/bench/img/blobs/" + string(layer.Digest)
	check := func(b *testing.B, d digest.Digest) {
		if d != layer.Digest {
			b.Fatalf("digest %s", d)
		}
	}
	for _, dst := range []string{"discard", "file"} {
		b.Run("limit-raw-get-sha256-1MiB/"+dst, func(b *testing.B) {
			b.SetBytes(size)
			w, reset := drainTo(b, dst)
			buf := make([]byte, 1<<20)
			for i := 0; i < b.N; i++ {
				reset()
				resp, err := http.Get(blobURL)
				if err != nil {
					b.Fatal(err)
				}
				h := sha256.New()
				if _, err := io.CopyBuffer(io.MultiWriter(h, w), struct{ io.Reader }{resp.Body}, buf); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				check(b, digest.NewDigest(digest.SHA256, h))
			}
		})
		b.Run("ocipull/"+dst, func(b *testing.B) {
			b.SetBytes(size)
			w, reset := drainTo(b, dst)
			for i := 0; i < b.N; i++ {
				reset()
				c := (&registry.Registry{Scheme: "http", Host: f.host}).Repository("bench/img")
				rc, err := c.OpenBlob(ctx, layer)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(w, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
		for _, viaBuffer := range []bool{false, true} {
			how := "io.Copy"
			if viaBuffer {
				how = "1MiB-buffer"
			}
			copyFn := func(w io.Writer, r io.Reader) error {
				if viaBuffer {
					_, err := io.CopyBuffer(w, struct{ io.Reader }{r}, make([]byte, 1<<20))
					return err
				}
				_, err := io.Copy(w, r)
				return err
			}
			b.Run("ggcr-"+how+"/"+dst, func(b *testing.B) {
				b.SetBytes(size)
				w, reset := drainTo(b, dst)
				ref, _ := name.NewDigest(f.host+"/bench/img@"+string(layer.Digest), name.Insecure)
				for i := 0; i < b.N; i++ {
					reset()
					l, err := remote.Layer(ref)
					if err != nil {
						b.Fatal(err)
					}
					rc, err := l.Compressed() // verified by ggcr at EOF
					if err != nil {
						b.Fatal(err)
					}
					if err := copyFn(w, rc); err != nil {
						b.Fatal(err)
					}
					rc.Close()
				}
			})
			b.Run("oras-"+how+"/"+dst, func(b *testing.B) {
				b.SetBytes(size)
				w, reset := drainTo(b, dst)
				for i := 0; i < b.N; i++ {
					reset()
					repo, _ := orasremote.NewRepository(f.host + "/bench/img")
					repo.PlainHTTP = true
					rc, err := repo.Blobs().Fetch(ctx, layer)
					if err != nil {
						b.Fatal(err)
					}
					vr := orascontent.NewVerifyReader(rc, layer) // as oras.Copy verifies
					if err := copyFn(w, vr); err != nil {
						b.Fatal(err)
					}
					if err := vr.Verify(); err != nil {
						b.Fatal(err)
					}
					rc.Close()
				}
			})
		}
	}
}

// BenchmarkManySmallLayers pulls the 100 layers of 64 KiB of one image, 8
// in flight, with a fresh client per pull: the limit (raw GETs hashed),
// ours, go-containerregistry and oras-go. It reports requests and TCP
// connections per pull, counted at the server.
func BenchmarkManySmallLayers(b *testing.B) {
	sizes := make([]int64, 100)
	for i := range sizes {
		sizes[i] = 64 << 10
	}
	f := newImageFixture(b, sizes...)
	ctx := context.Background()
	const inFlight = 8
	parallel := func(b *testing.B, fetch func(d ocispec.Descriptor) error) {
		if err := forEach(f.layers, inFlight, fetch); err != nil {
			b.Fatal(err)
		}
	}
	report := func(b *testing.B, r0, c0 int64) {
		b.ReportMetric(float64(f.count.requests.Load()-r0)/float64(b.N), "requests/op")
		b.ReportMetric(float64(f.count.conns.Load()-c0)/float64(b.N), "conns/op")
	}
	b.Run("limit-raw-get-sha256", func(b *testing.B) {
		b.SetBytes(int64(len(sizes)) * 64 << 10)
		r0, c0 := f.count.requests.Load(), f.count.conns.Load()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.MaxIdleConnsPerHost = inFlight
			t.MaxConnsPerHost = inFlight
			hc := &http.Client{Transport: t}
			var bufs sync.Pool
			bufs.New = func() any { b := make([]byte, 1<<20); return &b }
			parallel(b, func(d ocispec.Descriptor) error {
				resp, err := hc.Get(f.ts.URL + "/v2/bench/img/blobs/" + string(d.Digest))
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				h := sha256.New()
				buf := bufs.Get().(*[]byte)
				defer bufs.Put(buf)
				_, err = io.CopyBuffer(h, struct{ io.Reader }{resp.Body}, *buf)
				if err == nil && digest.NewDigest(digest.SHA256, h) != d.Digest {
					err = fmt.Errorf("digest mismatch")
				}
				return err
			})
			t.CloseIdleConnections()
		}
		report(b, r0, c0)
	})
	b.Run("ocipull", func(b *testing.B) {
		b.SetBytes(int64(len(sizes)) * 64 << 10)
		r0, c0 := f.count.requests.Load(), f.count.conns.Load()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			c := (&registry.Registry{Scheme: "http", Host: f.host, MaxConnsPerHost: inFlight}).Repository("bench/img")
			ref, err := c.Read(ctx, "v1")
			if err != nil {
				b.Fatal(err)
			}
			img := ref.(*oci.Image)
			parallel(b, func(d ocispec.Descriptor) error {
				rc, err := img.OpenBlob(context.Background(), d)
				if err != nil {
					return err
				}
				defer rc.Close()
				_, err = io.Copy(io.Discard, rc)
				return err
			})
			c.Registry().CloseIdleConnections()
		}
		report(b, r0, c0)
	})
	b.Run("ggcr", func(b *testing.B) {
		b.SetBytes(int64(len(sizes)) * 64 << 10)
		r0, c0 := f.count.requests.Load(), f.count.conns.Load()
		b.ReportAllocs()
		ref, _ := name.ParseReference(f.host+"/bench/img:v1", name.Insecure)
		for i := 0; i < b.N; i++ {
			t := remote.DefaultTransport.(*http.Transport).Clone()
			img, err := remote.Image(ref, remote.WithTransport(t))
			if err != nil {
				b.Fatal(err)
			}
			parallel(b, func(d ocispec.Descriptor) error { return drainGgcrLayer(img, d) })
			t.CloseIdleConnections()
		}
		report(b, r0, c0)
	})
	b.Run("oras", func(b *testing.B) {
		b.SetBytes(int64(len(sizes)) * 64 << 10)
		r0, c0 := f.count.requests.Load(), f.count.conns.Load()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			repo, _ := orasremote.NewRepository(f.host + "/bench/img")
			repo.PlainHTTP = true
			t := http.DefaultTransport.(*http.Transport).Clone()
			repo.Client = &http.Client{Transport: t}
			if _, _, err := repo.FetchReference(ctx, "v1"); err != nil {
				b.Fatal(err)
			}
			parallel(b, func(d ocispec.Descriptor) error { return drainOrasBlob(ctx, repo, d) })
			t.CloseIdleConnections()
		}
		report(b, r0, c0)
	})
}

// drainGgcrLayer reads one layer of img through go-containerregistry, as
// its users do (ggcr verifies compressed layers as they are read).
func drainGgcrLayer(img ggcrv1.Image, d ocispec.Descriptor) error {
	h, _ := ggcrv1.NewHash(string(d.Digest))
	l, err := img.LayerByDigest(h)
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// drainOrasBlob reads one blob through oras-go, verified as its users do.
func drainOrasBlob(ctx context.Context, repo *orasremote.Repository, d ocispec.Descriptor) error {
	rc, err := repo.Blobs().Fetch(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	vr := orascontent.NewVerifyReader(rc, d)
	if _, err := io.Copy(io.Discard, vr); err != nil {
		return err
	}
	return vr.Verify()
}
