package interop

import (
	"context"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/ocipull/registry/mirror"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// BenchmarkMirror measures the pull-through cache, candidates interleaved
// round by round (each b.N is one round), one client pulling the image
// (manifest and every blob, verified) — two images: "mixed", a 64 MiB
// layer and 8 of 256 KiB (where each small blob's durable landing costs
// two fsyncs, for every candidate that writes to disk), and "one-layer", a
// single 64 MiB layer:
//
//   - direct: from the upstream itself (our in-memory Server);
//   - cold-mirror: through a mirror with an empty store (a new one each
//     round, opened before the clock starts): upstream fetch, store write
//     and streaming to the client;
//   - direct-to-disk and cold-mirror-to-disk: the same two, the client
//     writing the image into a new layout (Layout.Write: durable);
//   - warm-mirror: through a mirror that holds everything;
//   - serve: from `ocipull serve`'s server of a layout holding the image.
//
// Each candidate's CPU time (the whole process: upstream, cache and
// client, user and system) is reported beside its wall time: on a
// 2-core machine a cold miss, which hashes every byte twice, cannot take
// less than about half its CPU time.
//
// OCIPULL_BENCH_NO_RANGES=1 turns ranged fetching off for the caches'
// upstream fetches.
//
// It reports each candidate's median milliseconds per pull and the
// ratios cold/direct (the cost of a miss, into a discarding client and
// into a layout on disk) and warm/serve.
func BenchmarkMirror(b *testing.B) {
	mixed := []int64{64 << 20}
	for i := 0; i < 8; i++ {
		mixed = append(mixed, 256<<10)
	}
	b.Run("image=mixed", func(b *testing.B) { benchMirror(b, mixed) })
	b.Run("image=one-layer", func(b *testing.B) { benchMirror(b, []int64{64 << 20}) })
}

func benchMirror(b *testing.B, sizes []int64) {
	f := newImageFixture(b, sizes...)
	ctx := context.Background()
	newMirror := func(dir string) (*mirror.Cache, *httptest.Server) {
		m, err := mirror.Open(dir, mirror.Config{Upstreams: map[string]mirror.Upstream{"": {URL: f.ts.URL, NoRanges: os.Getenv("OCIPULL_BENCH_NO_RANGES") != ""}}})
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
	// toDisk pulls the image into a new layout with Layout.Write, which
	// makes every blob durable: "a direct pull to disk".
	toDisk := func(host string) error {
		cl := (&registry.Registry{Scheme: "http", Host: host}).Repository("bench/img")
		defer cl.Registry().CloseIdleConnections()
		ref, err := cl.Read(ctx, "v1")
		if err != nil {
			return err
		}
		l, err := oci.CreateLayout(b.TempDir())
		if err != nil {
			return err
		}
		return l.Write(ctx, "v1", ref, nil)
	}
	// A cold mirror is opened (an empty store) before the clock starts
	// and closed after it stops: what is timed is the miss.
	cold := func(client func(string) error) func() (func() error, func()) {
		return func() (func() error, func()) {
			m, ts := newMirror(b.TempDir())
			return func() error { return client(hostOf(b, ts)) }, func() { ts.Close(); m.Close() }
		}
	}
	ready := func(run func() error) func() (func() error, func()) {
		return func() (func() error, func()) { return run, func() {} }
	}
	cands := []struct {
		name    string
		prepare func() (run func() error, cleanup func())
	}{
		{"direct", ready(func() error { return pull(f.host) })},
		{"cold-mirror", cold(pull)},
		{"direct-to-disk", ready(func() error { return toDisk(f.host) })},
		{"cold-mirror-to-disk", cold(toDisk)},
		{"warm-mirror", ready(func() error { return pull(hostOf(b, warmTS)) })},
		{"serve", ready(func() error { return pull(hostOf(b, serveTS)) })},
	}
	times := make([][]time.Duration, len(cands))
	cpu := make([][]time.Duration, len(cands))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, c := range cands {
			b.StopTimer()
			run, cleanup := c.prepare()
			b.StartTimer()
			start, cpu0 := time.Now(), processCPU()
			if err := run(); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			times[j] = append(times[j], time.Since(start))
			cpu[j] = append(cpu[j], processCPU()-cpu0)
			b.StopTimer()
			cleanup()
			b.StartTimer()
		}
	}
	b.StopTimer()
	med := map[string]float64{}
	for j, c := range cands {
		med[c.name] = median(times[j])
		b.ReportMetric(med[c.name], c.name+"-ms/pull")
		b.ReportMetric(median(cpu[j]), c.name+"-cpu-ms/pull")
	}
	b.ReportMetric(med["cold-mirror-to-disk"]/med["direct-to-disk"], "cold/direct-to-disk")
	b.ReportMetric(med["cold-mirror"]/med["direct"], "cold/direct")
	b.ReportMetric(med["warm-mirror"]/med["serve"], "warm/serve")
}

// processCPU is the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
