package oci

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestConcurrentFirstServesHashOnce: after a restart (a fresh Layout
// value), eight concurrent first reads of one stored blob hash it once,
// not once each (cache item 18).
func TestConcurrentFirstServesHashOnce(t *testing.T) {
	ctx := context.Background()
	mem := NewMemory()
	desc := mem.Add(v1.MediaTypeImageLayer, bytes.Repeat([]byte("x"), 8<<20))
	dir := t.TempDir()
	l, err := CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WriteBlob(ctx, mem, desc, nil); err != nil {
		t.Fatal(err)
	}
	fresh, err := OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			rc, err := fresh.Blob(ctx, desc)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, rc)
			rc.Close()
		})
	}
	wg.Wait()
	if n := fresh.hashes.Load(); n != 1 {
		t.Errorf("%d whole-file hashes for 8 concurrent first reads, want 1", n)
	}
}
