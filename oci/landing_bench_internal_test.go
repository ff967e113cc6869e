//go:build linux

package oci

import (
	"context"
	"crypto/rand"
	"os"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// BenchmarkLandingDurability lands one blob from memory (verified, through
// the pipeline) three ways, interleaved round by round: as the cache does
// (renamed, never synced: a crash costs a re-fetch, found by verification
// before the first serve after a restart), that landing followed by an
// fdatasync of the blob (durable the naive way), and as Layout.Write does
// (write-behind, fdatasync, rename, directory fsync). Reports each
// median's seconds and the ratios to the cache's way. The untimed sync
// before each round keeps one round's writeback out of the next.
//
// OCIPULL_BENCH_BLOB_MIB sets the size (default 256).
func BenchmarkLandingDurability(b *testing.B) {
	size := 256 << 20
	if v, err := strconv.Atoi(os.Getenv("OCIPULL_BENCH_BLOB_MIB")); err == nil && v > 0 {
		size = v << 20
	}
	data := make([]byte, size)
	rand.Read(data)
	mem := NewMemory()
	desc := mem.Add(v1.MediaTypeImageLayer, data)
	ctx := context.Background()
	ways := []struct {
		name string
		land func(l *Layout) error
	}{
		{"cache-unsynced", func(l *Layout) error {
			return l.writeBlob(ctx, mem, desc, nil, landOptions{pipelines: make(chan struct{}, maxPipelines)})
		}},
		{"unsynced-then-fdatasync", func(l *Layout) error {
			if err := l.writeBlob(ctx, mem, desc, nil, landOptions{pipelines: make(chan struct{}, maxPipelines)}); err != nil {
				return err
			}
			f, err := l.fs.openRegular(blobRel(desc.Digest), os.O_RDONLY)
			if err != nil {
				return err
			}
			defer f.Close()
			return syncData(f)
		}},
		{"durable-write-behind", func(l *Layout) error {
			return l.writeBlob(ctx, mem, desc, nil, landOptions{pipelines: make(chan struct{}, maxPipelines), durable: true})
		}},
		{"cache-direct", func(l *Layout) error {
			return l.writeBlob(ctx, mem, desc, nil, landOptions{pipelines: make(chan struct{}, maxPipelines), direct: true})
		}},
		{"durable-direct", func(l *Layout) error {
			return l.writeBlob(ctx, mem, desc, nil, landOptions{pipelines: make(chan struct{}, maxPipelines), durable: true, direct: true})
		}},
	}
	times := make([][]time.Duration, len(ways))
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, w := range ways {
			b.StopTimer()
			l, err := CreateLayout(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			syscall.Sync()
			b.StartTimer()
			start := time.Now()
			if err := w.land(l); err != nil {
				b.Fatal(err)
			}
			times[j] = append(times[j], time.Since(start))
		}
	}
	b.StopTimer()
	med := func(ds []time.Duration) float64 {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2].Seconds()
	}
	base := med(times[0])
	for j, w := range ways {
		m := med(times[j])
		b.ReportMetric(m, w.name+"-s")
		if j > 0 {
			b.ReportMetric(m/base, w.name+"/cache")
		}
	}
}
