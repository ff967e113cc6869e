package oci_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

// largeFixture serves an image whose one layer is large enough for the
// pipelined landing (9 MiB and an odd tail, so neither its size nor a
// resume point is aligned) through a real registry server behind a fault
// injector, and returns the image as the client read it.
type largeFixture struct {
	img     *oci.Image
	layer   v1.Descriptor
	content []byte
	inj     *faults.Injector
	ranges  atomic.Int64
}

func newLargeFixture(t *testing.T) *largeFixture {
	t.Helper()
	mem := oci.NewMemory()
	content := make([]byte, 9<<20+1234)
	rand.Read(content)
	layer := mem.Add(v1.MediaTypeImageLayer, content)
	cfg, _ := mem.AddJSON(v1.MediaTypeImageConfig, v1.Image{})
	img, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: []v1.Descriptor{layer}})
	if err != nil {
		t.Fatal(err)
	}
	srv := registry.NewServer()
	if err := srv.AddRef("big/one", "v1", img); err != nil {
		t.Fatal(err)
	}
	f := &largeFixture{layer: layer, content: content}
	f.inj = &faults.Injector{Next: srv}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			f.ranges.Add(1)
		}
		f.inj.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	c := (&registry.Registry{Scheme: "http", Host: ts.Listener.Addr().String()}).Repository("big/one")
	ref, err := c.Read(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	f.img = ref.(*oci.Image)
	return f
}

// check asserts that the layout at dir holds exactly the layer, and no
// partial file.
func (f *largeFixture) check(t *testing.T, l *oci.Layout) {
	t.Helper()
	got, err := os.ReadFile(l.BlobPath(f.layer.Digest))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, f.content) {
		t.Fatalf("layer on disk differs: %d bytes, want %d", len(got), len(f.content))
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(l.BlobPath(f.layer.Digest)), "*.partial")); len(left) != 0 {
		t.Errorf("partial files left: %v", left)
	}
}

func TestLayoutLargeBlob(t *testing.T) {
	f := newLargeFixture(t)
	dirs := map[string]string{"disk": t.TempDir()}
	// tmpfs takes O_DIRECT only on recent kernels: the landing must fall
	// back to buffered writes where it is refused.
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "ocipull-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs["tmpfs"] = d
		}
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			l, err := oci.CreateLayout(filepath.Join(dir, "layout"))
			if err != nil {
				t.Fatal(err)
			}
			var last atomic.Int64
			opts := &oci.WriteOptions{Progress: func(p oci.BlobProgress) {
				if p.Descriptor.Digest == f.layer.Digest {
					last.Store(p.Complete)
				}
			}}
			if err := l.Write(context.Background(), "v1", f.img, opts); err != nil {
				t.Fatal(err)
			}
			f.check(t, l)
			if last.Load() != f.layer.Size {
				t.Errorf("last progress %d, want %d", last.Load(), f.layer.Size)
			}
		})
	}
}

func TestLayoutLargeBlobResumesUnaligned(t *testing.T) {
	f := newLargeFixture(t)
	l, _ := oci.CreateLayout(t.TempDir())
	p := l.BlobPath(f.layer.Digest)
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p+".partial", f.content[:3<<20+777], 0o644)
	var resumed atomic.Bool
	opts := &oci.WriteOptions{Progress: func(bp oci.BlobProgress) {
		if bp.Resumed && bp.Descriptor.Digest == f.layer.Digest {
			resumed.Store(true)
		}
	}}
	if err := l.Write(context.Background(), "", f.img, opts); err != nil {
		t.Fatal(err)
	}
	f.check(t, l)
	if !resumed.Load() || f.ranges.Load() != 1 {
		t.Errorf("resumed %v with %d range requests, want one", resumed.Load(), f.ranges.Load())
	}

	// A partial file whose bytes are wrong fails verification, is removed,
	// and the same write starts over: one ranged resumption that does not
	// verify, then the whole blob.
	os.Remove(p)
	f.ranges.Store(0)
	bad := append([]byte(nil), f.content[:5<<20]...)
	bad[4<<20] ^= 1
	os.WriteFile(p+".partial", bad, 0o644)
	if err := l.Write(context.Background(), "", f.img, nil); err != nil {
		t.Fatalf("write over a bad partial: %v", err)
	}
	if _, err := os.Stat(p + ".partial"); err == nil {
		t.Error("bad partial file kept")
	}
	if n := f.ranges.Load(); n != 1 {
		t.Errorf("%d range requests, want 1 (the resumption), then a whole GET", n)
	}
	f.check(t, l)
}

func TestLayoutLargeBlobHostileServer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault faults.Fault
		first int // requests the fault applies to; 0 means all
		want  error
	}{
		{name: "corrupt", fault: faults.Corrupt(), want: oci.ErrDigestMismatch},
		{name: "junk after the content", fault: faults.Oversize(3 << 20)},
		{name: "cut mid-body, resumed", fault: faults.CutAfter(2<<20 + 5), first: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newLargeFixture(t)
			f.inj.Add(faults.Rule{Path: "/blobs/" + string(f.layer.Digest), Method: http.MethodGet, Times: tc.first, Fault: tc.fault})
			l, _ := oci.CreateLayout(t.TempDir())
			err := l.Write(context.Background(), "v1", f.img, nil)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				p := l.BlobPath(f.layer.Digest)
				for _, name := range []string{p, p + ".partial"} {
					if _, err := os.Stat(name); err == nil {
						t.Errorf("%s left behind", filepath.Base(name))
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f.check(t, l)
		})
	}
}

// TestLayoutSeveralLargeBlobs: more large blobs in flight than may use the
// pipeline at once; the others take the one-goroutine path, and all land.
func TestLayoutSeveralLargeBlobs(t *testing.T) {
	mem := oci.NewMemory()
	var layers []v1.Descriptor
	contents := map[string][]byte{}
	for i := 0; i < 4; i++ {
		content := make([]byte, 8<<20+i*4097)
		rand.Read(content)
		d := mem.Add(v1.MediaTypeImageLayer, content)
		layers = append(layers, d)
		contents[string(d.Digest)] = content
	}
	cfg, _ := mem.AddJSON(v1.MediaTypeImageConfig, v1.Image{})
	img, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: layers})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := oci.CreateLayout(t.TempDir())
	if err := l.Write(context.Background(), "v1", img, &oci.WriteOptions{Jobs: 4}); err != nil {
		t.Fatal(err)
	}
	for _, d := range layers {
		got, err := os.ReadFile(l.BlobPath(d.Digest))
		if err != nil || !bytes.Equal(got, contents[string(d.Digest)]) {
			t.Errorf("layer %s differs on disk (%v)", d.Digest, err)
		}
	}
}

// TestLayoutLargeBlobInterrupted: a pipelined landing cancelled part-way
// leaves a .partial that is an exact prefix of the blob, and the next Write
// continues it with one Range request.
func TestLayoutLargeBlobInterrupted(t *testing.T) {
	f := newLargeFixture(t)
	// The first download stalls after 5 MiB, so that the cancellation
	// below, at 3 MiB on disk, comes before the pipeline has read it all.
	f.inj.Add(faults.Rule{Path: "/blobs/" + string(f.layer.Digest), Method: http.MethodGet, Nth: 1, Fault: faults.StallAfter(5<<20, 10*time.Second)})
	l, _ := oci.CreateLayout(t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := &oci.WriteOptions{Progress: func(p oci.BlobProgress) {
		if p.Descriptor.Digest == f.layer.Digest && p.Complete >= 3<<20 {
			cancel()
		}
	}}
	if err := l.Write(ctx, "v1", f.img, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	partial, err := os.ReadFile(l.BlobPath(f.layer.Digest) + ".partial")
	if err != nil {
		t.Fatal(err)
	}
	if len(partial) < 3<<20 || len(partial) >= len(f.content) || !bytes.Equal(partial, f.content[:len(partial)]) {
		t.Fatalf(".partial of %d bytes is not a proper prefix of the blob", len(partial))
	}
	var resumed atomic.Bool
	opts = &oci.WriteOptions{Progress: func(p oci.BlobProgress) {
		if p.Resumed && p.Descriptor.Digest == f.layer.Digest {
			resumed.Store(true)
		}
	}}
	if err := l.Write(context.Background(), "v1", f.img, opts); err != nil {
		t.Fatal(err)
	}
	f.check(t, l)
	if !resumed.Load() || f.ranges.Load() != 1 {
		t.Errorf("resumed %v with %d range requests, want one", resumed.Load(), f.ranges.Load())
	}
}
