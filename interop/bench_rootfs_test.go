package interop

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/archive"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/rootfs"
)

// rootfsFixture is an image of 5 uncompressed layers holding files
// files of (bytes / files) bytes in all, each layer deleting some of the
// one below, in our form and go-containerregistry's.
type rootfsFixture struct {
	layers [][]byte
	img    *oci.Image
	gimg   ggcrv1.Image
}

func newRootfsFixture(b *testing.B, files int, bytesTotal int64) *rootfsFixture {
	b.Helper()
	per := int(bytesTotal / int64(files))
	body := make([]byte, per)
	rand.Read(body)
	f := &rootfsFixture{}
	for l := range 5 {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for i := range files / 5 {
			name := fmt.Sprintf("l%d/d%03d/f%05d", l, i%500, i)
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(per), ModTime: time.Unix(1700000000, 0)})
			tw.Write(body)
			if l > 0 && i%10 == 0 {
				tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("l%d/d%03d/.wh.f%05d", l-1, i%500, i), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)})
			}
		}
		tw.Close()
		f.layers = append(f.layers, buf.Bytes())
	}
	mem := oci.NewMemory()
	var descs []ocispec.Descriptor
	var ids []digest.Digest
	gimg := empty.Image
	var err error
	for _, l := range f.layers {
		descs = append(descs, mem.Add(ocispec.MediaTypeImageLayer, l))
		ids = append(ids, digest.FromBytes(l))
		if gimg, err = mutate.AppendLayers(gimg, static.NewLayer(l, types.OCIUncompressedLayer)); err != nil {
			b.Fatal(err)
		}
	}
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: ids}})
	if f.img, err = mem.NewImage(ocispec.Manifest{Config: mem.Add(ocispec.MediaTypeImageConfig, cfg), Layers: descs}); err != nil {
		b.Fatal(err)
	}
	f.gimg = gimg
	return f
}

// peakHeap runs fn while sampling the heap every 5 ms and returns its
// peak growth over the heap at the start (bytes in live and unswept heap
// objects): what fn itself held, not the fixture's layers.
func peakHeap(fn func() error) (uint64, error) {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	base := s[0].Value.Uint64()
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	err := fn()
	close(done)
	wg.Wait()
	if peak < base {
		return 0, err
	}
	return peak - base, err
}

// BenchmarkRootfs: our Flatten against crane export (go-containerregistry
// mutate.Extract) to a discarding writer, and our Unpack against
// containerd's applier into a fresh directory, interleaved, as ratios;
// with the peak heap of each. 5 layers, 5,000 files, 50 MiB by default;
// OCIPULL_ROOTFS_PROOF=1 makes it 50,000 files and 1 GiB.
func BenchmarkRootfs(b *testing.B) {
	files, size := 5_000, int64(50<<20)
	if os.Getenv("OCIPULL_ROOTFS_PROOF") != "" {
		files, size = 50_000, 1<<30
	}
	f := newRootfsFixture(b, files, size)
	ctx := context.Background()
	base := b.TempDir()
	n := 0
	fresh := func() string { n++; return filepath.Join(base, fmt.Sprint(n)) }
	cands := []struct {
		name string
		run  func() error
	}{
		{"ocipull-flatten", func() error { return rootfs.Flatten(ctx, f.img, io.Discard, nil) }},
		{"crane-export", func() error {
			rc := mutate.Extract(f.gimg)
			defer rc.Close()
			_, err := io.Copy(io.Discard, rc)
			return err
		}},
		{"ocipull-unpack", func() error {
			dir := fresh()
			defer os.RemoveAll(dir)
			return rootfs.Unpack(ctx, f.img, dir, nil)
		}},
		{"containerd-apply", func() error {
			dir := fresh()
			defer os.RemoveAll(dir)
			os.MkdirAll(dir, 0o755)
			var opts []archive.ApplyOpt
			if os.Geteuid() != 0 {
				opts = append(opts, archive.WithNoSameOwner())
			}
			for _, l := range f.layers {
				if _, err := archive.Apply(ctx, dir, bytes.NewReader(l), opts...); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	times := make([][]time.Duration, len(cands))
	peaks := make([]uint64, len(cands))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, c := range cands {
			start := time.Now()
			p, err := peakHeap(c.run)
			if err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			times[j] = append(times[j], time.Since(start))
			peaks[j] = max(peaks[j], p)
		}
	}
	b.StopTimer()
	med := make([]float64, len(cands))
	for j, c := range cands {
		med[j] = median(times[j])
		b.ReportMetric(med[j], c.name+"-ms")
		b.ReportMetric(float64(peaks[j])/(1<<20), c.name+"-peak-MiB")
	}
	b.ReportMetric(med[0]/med[1], "flatten-time-vs-crane")
	b.ReportMetric(med[2]/med[3], "unpack-time-vs-containerd")
}
