package interop

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ocipull/registry/mirror"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// BenchmarkMirror measures the pull-through cache, candidates interleaved
// round by round (each b.N is one round), one client pulling the image
// (a 64 MiB layer and 8 of 256 KiB; manifest and every blob, verified):
//
//   - direct: from the upstream itself (our in-memory Server);
//   - cold-mirror: through a mirror with an empty store (a new one each
//     round): upstream fetch, store write and streaming to the client;
//   - warm-mirror: through a mirror that holds everything;
//   - serve: from `ocipull serve`'s server of a layout holding the image.
//
// It reports each candidate's median milliseconds per pull and the
// ratios cold/direct (the cost of a miss) and warm/serve.
func BenchmarkMirror(b *testing.B) {
	sizes := []int64{64 << 20}
	for i := 0; i < 8; i++ {
		sizes = append(sizes, 256<<10)
	}
	f := newImageFixture(b, sizes...)
	ctx := context.Background()
	newMirror := func(dir string) (*mirror.Cache, *httptest.Server) {
		m, err := mirror.Open(dir, mirror.Config{Upstreams: map[string]mirror.Upstream{"": {URL: f.ts.URL}}})
		if err != nil {
			b.Fatal(err)
		}
		return m, httptest.NewServer(m)
	}
	warm, warmTS := newMirror(b.TempDir())
	defer func() { warmTS.Close(); warm.Close() }()
	if err := coldPulls(b, hostOf(b, warmTS), "bench/img", "v1", 1); err != nil {
		b.Fatal(err)
	}
	// A layout with the image, served as `ocipull serve` does.
	l, err := oci.CreateLayout(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Write(ctx, "v1", f.img, nil); err != nil {
		b.Fatal(err)
	}
	ref, err := l.Read(ctx, "v1")
	if err != nil {
		b.Fatal(err)
	}
	srv := registry.NewServer()
	if err := srv.AddRef("bench/img", "v1", ref); err != nil {
		b.Fatal(err)
	}
	serveTS := httptest.NewServer(srv)
	defer serveTS.Close()

	pull := func(host string) error { return coldPulls(b, host, "bench/img", "v1", 1) }
	cands := []struct {
		name string
		run  func() error
	}{
		{"direct", func() error { return pull(f.host) }},
		{"cold-mirror", func() error {
			m, ts := newMirror(b.TempDir())
			defer func() { ts.Close(); m.Close() }()
			return pull(hostOf(b, ts))
		}},
		{"warm-mirror", func() error { return pull(hostOf(b, warmTS)) }},
		{"serve", func() error { return pull(hostOf(b, serveTS)) }},
	}
	times := make([][]time.Duration, len(cands))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, c := range cands {
			start := time.Now()
			if err := c.run(); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			times[j] = append(times[j], time.Since(start))
		}
	}
	b.StopTimer()
	med := map[string]float64{}
	for j, c := range cands {
		med[c.name] = median(times[j])
		b.ReportMetric(med[c.name], c.name+"-ms/pull")
	}
	b.ReportMetric(med["cold-mirror"]/med["direct"], "cold/direct")
	b.ReportMetric(med["warm-mirror"]/med["serve"], "warm/serve")
}
