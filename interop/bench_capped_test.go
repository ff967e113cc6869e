package interop

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/transfer"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	ggcrtypes "github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orascontent "oras.land/oras-go/v2/content"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
)

// cappedLink is our server holding one large layer behind a link that
// adds latency to every request and caps every connection's throughput,
// counting the TCP connections clients open.
type cappedLink struct {
	ts    *httptest.Server
	host  string
	layer ocispec.Descriptor
	conns atomic.Int64
	bytes atomic.Int64 // blob body bytes the server sent
}

// upstreamHandler is the registry behind the link: our server, or the
// reference registry (in-memory storage) with the layer pushed to it.
func upstreamHandler(b *testing.B, which string, size int64) (http.Handler, ocispec.Descriptor) {
	f := newImageFixture(b, size)
	if which == "ours" {
		return f.ts.Config.Handler, f.layers[0]
	}
	app := referenceApp(b, "", "")
	ts := httptest.NewServer(app)
	defer ts.Close()
	rc, err := f.img.OpenBlob(context.Background(), f.layers[0])
	if err != nil {
		b.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		b.Fatal(err)
	}
	repo, _ := name.NewRepository(hostOf(b, ts)+"/bench/img", name.Insecure)
	if err := remote.WriteLayer(repo, static.NewLayer(data, ggcrtypes.OCILayer)); err != nil {
		b.Fatal(err)
	}
	return app, f.layers[0]
}

func newCappedLink(b *testing.B, upstream string, size int64, latency time.Duration, rate int64) *cappedLink {
	b.Helper()
	h, layer := upstreamHandler(b, upstream, size)
	l := &cappedLink{layer: layer}
	inj := &faults.Injector{Next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet {
			w = &countingWriter{ResponseWriter: w, n: &l.bytes}
		}
		h.ServeHTTP(w, r)
	})}
	if latency > 0 {
		inj.Add(faults.Rule{Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			faults.Stall(latency).Serve(w, r, throttled(rate, next))
		})})
	} else if rate > 0 {
		inj.Add(faults.Rule{Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			throttled(rate, next).ServeHTTP(w, r)
		})})
	}
	l.ts = httptest.NewUnstartedServer(inj)
	l.ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			l.conns.Add(1)
		}
	}
	l.ts.Start()
	b.Cleanup(l.ts.Close)
	l.host = hostOf(b, l.ts)
	return l
}

// throttled caps blob bodies at rate bytes per second (0: no cap).
func throttled(rate int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rate > 0 && strings.Contains(r.URL.Path, "/blobs/") {
			faults.Throttle(rate).Serve(w, r, next)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// BenchmarkCappedLink pulls one large layer (256 MiB; OCIPULL_BENCH_BLOB_MIB
// to change it) over a link that adds 50 ms to every request (25 ms each
// way) and caps each connection at 40 MB/s, as object stores and CDNs do,
// candidates interleaved round by round: ocipull (ranged fetch, 8 in
// flight), go-containerregistry and oras-go (one stream each), containerd
// with its opt-in chunked fetch at the same parallelism (8 × 16 MiB).
// It reports each one's median seconds, TCP connections and bytes
// allocated per pull, and ocipull's speed relative to each. The
// "uncapped" case compares ocipull with and without ranges on a plain
// loopback link.
func BenchmarkCappedLink(b *testing.B) {
	size := benchBlobMiB() << 20
	if size > 256<<20 {
		size = 256 << 20
	}
	ctx := context.Background()
	for _, link := range []struct {
		name, upstream string
		latency        time.Duration
		rate           int64
	}{
		{"ours/capped-40MBps-50ms", "ours", 50 * time.Millisecond, 40e6},
		{"reference/capped-40MBps-50ms", "reference", 50 * time.Millisecond, 40e6},
		{"ours/uncapped", "ours", 0, 0},
	} {
		b.Run(link.name, func(b *testing.B) {
			l := newCappedLink(b, link.upstream, size, link.latency, link.rate)
			cands := []struct {
				name string
				pull func() error
			}{
				{"ocipull", func() error { return cappedOcipull(ctx, l, 8) }},
				{"ocipull-single", func() error { return cappedOcipull(ctx, l, 1) }},
			}
			if link.rate > 0 {
				cands = append(cands,
					struct {
						name string
						pull func() error
					}{"ggcr", func() error { return cappedGgcr(l) }},
					struct {
						name string
						pull func() error
					}{"oras", func() error { return cappedOras(ctx, l) }},
					struct {
						name string
						pull func() error
					}{"containerd-chunked", func() error { return cappedContainerd(ctx, l) }})
			}
			times := make([][]time.Duration, len(cands))
			conns := make([]int64, len(cands))
			alloc := make([]uint64, len(cands))
			sent := make([]int64, len(cands))
			var ms runtime.MemStats
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j, c := range cands {
					runtime.ReadMemStats(&ms)
					a0, c0, s0 := ms.TotalAlloc, l.conns.Load(), l.bytes.Load()
					start := time.Now()
					if err := c.pull(); err != nil {
						b.Fatalf("%s: %v", c.name, err)
					}
					times[j] = append(times[j], time.Since(start))
					runtime.ReadMemStats(&ms)
					alloc[j] += ms.TotalAlloc - a0
					conns[j] += l.conns.Load() - c0
					sent[j] += l.bytes.Load() - s0
				}
			}
			b.StopTimer()
			med := map[string]float64{}
			for j, c := range cands {
				med[c.name] = median(times[j]) / 1000
				b.ReportMetric(med[c.name], c.name+"-s/pull")
				b.ReportMetric(float64(conns[j])/float64(b.N), c.name+"-conns/pull")
				b.ReportMetric(float64(alloc[j])/float64(b.N)/(1<<20), c.name+"-MiB-alloc/pull")
				b.ReportMetric(float64(sent[j])/float64(b.N)/float64(l.layer.Size), c.name+"-sent/size")
			}
			for _, other := range []string{"ocipull-single", "ggcr", "oras", "containerd-chunked"} {
				if m, ok := med[other]; ok {
					b.ReportMetric(m/med["ocipull"], "speed-vs-"+other)
				}
			}
		})
	}
}

func cappedOcipull(ctx context.Context, l *cappedLink, lanes int) error {
	c := (&registry.Registry{Scheme: "http", Host: l.host, RangeParallelism: lanes}).Repository("bench/img")
	defer c.Registry().CloseIdleConnections()
	rc, err := c.OpenBlob(ctx, l.layer)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

func cappedGgcr(l *cappedLink) error {
	ref, err := name.NewDigest(l.host+"/bench/img@"+string(l.layer.Digest), name.Insecure)
	if err != nil {
		return err
	}
	t := remote.DefaultTransport.(*http.Transport).Clone()
	defer t.CloseIdleConnections()
	layer, err := remote.Layer(ref, remote.WithTransport(t))
	if err != nil {
		return err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

func cappedOras(ctx context.Context, l *cappedLink) error {
	repo, _ := orasremote.NewRepository(l.host + "/bench/img")
	repo.PlainHTTP = true
	t := http.DefaultTransport.(*http.Transport).Clone()
	defer t.CloseIdleConnections()
	repo.Client = &http.Client{Transport: t}
	rc, err := repo.Blobs().Fetch(ctx, l.layer)
	if err != nil {
		return err
	}
	defer rc.Close()
	vr := orascontent.NewVerifyReader(rc, l.layer)
	if _, err := io.Copy(io.Discard, vr); err != nil {
		return err
	}
	return vr.Verify()
}

func cappedContainerd(ctx context.Context, l *cappedLink) error {
	t := http.DefaultTransport.(*http.Transport).Clone()
	defer t.CloseIdleConnections()
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(func(string) (bool, error) { return true, nil }),
			docker.WithClient(&http.Client{Transport: t})),
	})
	resolver.(interface {
		SetOptions(...transfer.ImageResolverOption)
	}).SetOptions(transfer.WithMaxConcurrentDownloads(8), transfer.WithConcurrentLayerFetchBuffer(16<<20))
	fetcher, err := resolver.Fetcher(ctx, l.host+"/bench/img@"+string(l.layer.Digest))
	if err != nil {
		return err
	}
	rc, err := fetcher.Fetch(ctx, l.layer)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return err
	}
	if got := digest.NewDigest(digest.SHA256, h); got != l.layer.Digest {
		return fmt.Errorf("containerd: digest %s, want %s", got, l.layer.Digest)
	}
	return nil
}

// BenchmarkCappedPullCommand runs `ocipull pull` (default flags) of the
// large-layer image over the capped link into a layout, and reports its
// time and peak RSS (VmHWM of the child process).
func BenchmarkCappedPullCommand(b *testing.B) {
	size := benchBlobMiB() << 20
	if size > 256<<20 {
		size = 256 << 20
	}
	l := newCappedLink(b, "ours", size, 50*time.Millisecond, 40e6)
	bin := filepath.Join(b.TempDir(), "ocipull")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ocipull/registry/cmd/ocipull").CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	var peak int64
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(b.TempDir(), "layout")
		cmd := exec.Command(bin, "pull", "--quiet", l.host+"/bench/img:v1", dir)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
		var hwm int64
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
	wait:
		for {
			select {
			case err := <-done:
				if err != nil {
					b.Fatalf("%v: %s", err, out.String())
				}
				break wait
			case <-time.After(20 * time.Millisecond):
				hwm = max(hwm, vmHWM(status))
			}
		}
		peak = max(peak, hwm)
	}
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
}
