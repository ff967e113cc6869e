package interop

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// BenchmarkSmallLayersInterleaved pulls the 100 layers of 64 KiB of one
// image with a fresh client per pull (manifest, then every layer,
// verified), sequentially and with 8 in flight. The candidates run
// interleaved, round by round, in an order that rotates every round, so
// a machine that changes speed mid-run cannot favour one, and no client
// always runs after the same one; each b.N is one
// round, and the benchmark reports each candidate's median milliseconds
// per pull and ocipull's speed relative to the others (above 1: faster).
func BenchmarkSmallLayersInterleaved(b *testing.B) {
	sizes := make([]int64, 100)
	for i := range sizes {
		sizes[i] = 64 << 10
	}
	f := newImageFixture(b, sizes...)
	ctx := context.Background()
	for _, inFlight := range []int{1, 8} {
		b.Run(fmt.Sprintf("inflight-%d", inFlight), func(b *testing.B) {
			cands := []struct {
				name string
				pull func() error
			}{
				{"ocipull", func() error { return pullOcipull(ctx, f, inFlight) }},
				{"oras", func() error { return pullOras(ctx, f, inFlight) }},
				{"ggcr", func() error { return pullGgcr(f, inFlight) }},
			}
			times := make([][]time.Duration, len(cands))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// The order rotates each round, so that no client always
				// follows the same one (and pays for its garbage).
				for k := range cands {
					j := (i + k) % len(cands)
					c := cands[j]
					start := time.Now()
					if err := c.pull(); err != nil {
						b.Fatalf("%s: %v", c.name, err)
					}
					times[j] = append(times[j], time.Since(start))
				}
			}
			b.StopTimer()
			med := make([]float64, len(cands))
			for j, c := range cands {
				med[j] = median(times[j])
				b.ReportMetric(med[j], c.name+"-ms/pull")
			}
			b.ReportMetric(med[1]/med[0], "speed-vs-oras")
			b.ReportMetric(med[2]/med[0], "speed-vs-ggcr")
		})
	}
}

func median(ds []time.Duration) float64 {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[len(s)/2]) / float64(time.Millisecond)
}

// forEach runs fetch over the layers, inFlight at a time.
func forEach(layers []ocispec.Descriptor, inFlight int, fetch func(ocispec.Descriptor) error) error {
	if inFlight == 1 {
		for _, d := range layers {
			if err := fetch(d); err != nil {
				return err
			}
		}
		return nil
	}
	work := make(chan ocispec.Descriptor)
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := 0; i < inFlight; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				if err := fetch(d); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for _, d := range layers {
		work <- d
	}
	close(work)
	wg.Wait()
	err, _ := failed.Load().(error)
	return err
}

func pullOcipull(ctx context.Context, f *imageFixture, inFlight int) error {
	c := (&registry.Registry{Scheme: "http", Host: f.host, MaxConnsPerHost: inFlight}).Repository("bench/img")
	defer c.Registry().CloseIdleConnections()
	ref, err := c.Read(ctx, "v1")
	if err != nil {
		return err
	}
	img := ref.(*oci.Image)
	return forEach(img.Layers(), inFlight, func(d ocispec.Descriptor) error {
		rc, err := img.OpenBlob(ctx, d)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(io.Discard, rc)
		return err
	})
}

func pullOras(ctx context.Context, f *imageFixture, inFlight int) error {
	repo, _ := orasremote.NewRepository(f.host + "/bench/img")
	repo.PlainHTTP = true
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxConnsPerHost = inFlight
	defer t.CloseIdleConnections()
	repo.Client = &http.Client{Transport: t}
	_, mrc, err := repo.FetchReference(ctx, "v1")
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, mrc); err != nil {
		return err
	}
	mrc.Close()
	return forEach(f.layers, inFlight, func(d ocispec.Descriptor) error { return drainOrasBlob(ctx, repo, d) })
}

func pullGgcr(f *imageFixture, inFlight int) error {
	ref, _ := name.ParseReference(f.host+"/bench/img:v1", name.Insecure)
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.MaxConnsPerHost = inFlight
	defer t.CloseIdleConnections()
	img, err := remote.Image(ref, remote.WithTransport(t))
	if err != nil {
		return err
	}
	return forEach(f.layers, inFlight, func(d ocispec.Descriptor) error { return drainGgcrLayer(img, d) })
}
