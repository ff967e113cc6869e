package oci

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// recordedDurability records the durability calls a layout makes, in
// order, and makes them for real.
type recordedDurability struct {
	real durability
	fs   *layoutFS
	mu   sync.Mutex
	ops  []string
}

func (r *recordedDurability) record(op string) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

func (r *recordedDurability) syncData(f *os.File) error {
	r.record("data " + path.Base(f.Name()))
	return r.real.syncData(f)
}

func (r *recordedDurability) rename(from, to string) error {
	r.record("rename " + path.Base(from) + " " + to)
	return r.real.rename(from, to)
}

func (r *recordedDurability) syncDir(rel string) error {
	r.record("dir " + rel)
	return r.real.syncDir(rel)
}

// TestDurableLandingOrder: every blob Layout.Write lands (a large one
// through the pipeline with write-behind, small ones on one goroutine) is
// synced, then renamed into place, then its directory synced, and
// index.json names the image only after all of that; the cache's landing
// (WriteBlob) is renamed without syncs, relying on verification before
// its first serve after a restart.
func TestDurableLandingOrder(t *testing.T) {
	mem := NewMemory()
	big := make([]byte, pipelineMinSize+3<<20)
	rand.Read(big)
	small := make([]byte, 64<<10)
	rand.Read(small)
	layers := []v1.Descriptor{mem.Add(v1.MediaTypeImageLayer, big), mem.Add(v1.MediaTypeImageLayer, small)}
	img, err := mem.NewImage(v1.Manifest{Config: mem.Add(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`)), Layers: layers})
	if err != nil {
		t.Fatal(err)
	}
	l, err := CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordedDurability{real: l.fs.durable, fs: l.fs}
	l.fs.durable = rec
	if err := l.Write(context.Background(), "v1", img, nil); err != nil {
		t.Fatal(err)
	}
	ops := slices.Clone(rec.ops)
	for _, d := range layers {
		rel := blobRel(d.Digest)
		want := []string{"data " + path.Base(rel) + ".partial", "rename " + path.Base(rel) + ".partial " + rel, "dir " + path.Dir(rel)}
		if at := indexOfSequence(ops, want); at < 0 {
			t.Errorf("layer %s: the durability calls %q lack %q in that order", d.Digest, ops, want)
		}
	}
	last := ops[len(ops)-3:]
	if !strings.HasPrefix(last[0], "data .tmp-index.json-") || !strings.HasSuffix(last[1], " index.json") || last[2] != "dir ." {
		t.Errorf("the last durability calls are %q, want index.json synced, renamed and its directory synced", last)
	}
	// Everything the index names was made durable before it.
	for _, d := range append(layers, img.Descriptor()) {
		i := slices.Index(ops, "dir "+path.Dir(blobRel(d.Digest)))
		if i < 0 || i > len(ops)-3 {
			t.Errorf("%s: its directory synced at %d of %q, want before index.json", d.Digest, i, ops)
		}
	}

	// The cache's landing: renamed, not synced.
	rec.ops = nil
	other := make([]byte, 1<<20)
	rand.Read(other)
	desc := mem.Add(v1.MediaTypeImageLayer, other)
	if err := l.WriteBlob(context.Background(), mem, desc, nil); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(rec.ops); got != fmt.Sprint([]string{"rename " + path.Base(blobRel(desc.Digest)) + ".partial " + blobRel(desc.Digest)}) {
		t.Errorf("WriteBlob's durability calls: %s, want one rename", got)
	}
}

// indexOfSequence is where want occurs in ops as a subsequence (other
// calls may come between), or -1.
func indexOfSequence(ops, want []string) int {
	start, j := -1, 0
	for i, op := range ops {
		if j < len(want) && op == want[j] {
			if j == 0 {
				start = i
			}
			j++
		}
	}
	if j < len(want) {
		return -1
	}
	return start
}
