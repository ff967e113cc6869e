package oci_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// TestConcurrentWritesShareBlobs: writers that land the same blobs into one
// layout at once — two Write calls on one Layout, and two Layout values on
// one directory, as two processes would — all succeed, every blob ends
// whole and verified, and index.json keeps every tag.
func TestConcurrentWritesShareBlobs(t *testing.T) {
	mem := oci.NewMemory()
	shared := make([]byte, 12<<20+333) // through the pipeline
	rand.Read(shared)
	small := make([]byte, 300<<10) // through the one-goroutine path
	rand.Read(small)
	base := mem.Add(v1.MediaTypeImageLayer, shared)
	base2 := mem.Add(v1.MediaTypeImageLayer, small)
	var imgs []*oci.Image
	for i := 0; i < 4; i++ {
		top := mem.Add(v1.MediaTypeImageLayer, []byte{byte(i)})
		cfg, _ := mem.AddJSON(v1.MediaTypeImageConfig, v1.Image{Author: string(rune('a' + i))})
		img, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: []v1.Descriptor{base, base2, top}})
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	for round := 0; round < 5; round++ {
		dir := t.TempDir()
		first, err := oci.CreateLayout(dir)
		if err != nil {
			t.Fatal(err)
		}
		second, err := oci.OpenLayout(dir)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, len(imgs))
		for i, img := range imgs {
			l := first
			if i%2 == 1 {
				l = second
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = l.Write(context.Background(), string(rune('a'+i)), img, nil)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, writer %d: %v", round, i, err)
			}
		}
		for _, c := range []struct {
			d    v1.Descriptor
			want []byte
		}{{base, shared}, {base2, small}} {
			got, err := os.ReadFile(first.BlobPath(c.d.Digest))
			if err != nil || !bytes.Equal(got, c.want) {
				t.Fatalf("round %d: shared blob %s differs on disk (%d bytes, %v)", round, c.d.Digest, len(got), err)
			}
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*.partial")); len(left) != 0 {
			t.Fatalf("round %d: partial files left: %v", round, left)
		}
		idx, err := first.Index()
		if err != nil {
			t.Fatal(err)
		}
		if len(idx.Manifests) != len(imgs) {
			t.Fatalf("round %d: index.json has %d entries, want %d", round, len(idx.Manifests), len(imgs))
		}
	}
}
