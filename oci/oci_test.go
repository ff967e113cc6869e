package oci_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

func TestVerifyReader(t *testing.T) {
	content := []byte("hello, world")
	good := v1.Descriptor{MediaType: "x", Digest: digest.FromBytes(content), Size: int64(len(content))}
	for _, tc := range []struct {
		name   string
		body   []byte
		desc   v1.Descriptor
		want   error
		gotLen int
	}{
		{"match", content, good, nil, len(content)},
		{"wrong bytes", []byte("hello, World"), good, oci.ErrDigestMismatch, 0},
		{"short", content[:5], good, oci.ErrSizeMismatch, 5},
		{"long: never more than size", append(content, "extra"...), good, nil, len(content)},
		{"wrong bytes, withheld", []byte("hello, worlD"), good, oci.ErrDigestMismatch, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, viaWriterTo := range []bool{false, true} {
				vr, err := oci.NewVerifyReader(io.NopCloser(bytes.NewReader(tc.body)), tc.desc)
				if err != nil {
					t.Fatal(err)
				}
				var got []byte
				if viaWriterTo {
					var buf bytes.Buffer
					_, err = vr.WriteTo(&buf)
					got = buf.Bytes()
				} else {
					got, err = io.ReadAll(struct{ io.Reader }{vr})
				}
				if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
					t.Fatalf("writerTo=%v: got %v, want %v", viaWriterTo, err, tc.want)
				}
				if tc.want == nil && !bytes.Equal(got, content) {
					t.Errorf("got %q", got)
				}
				if tc.want != nil && len(got) == len(content) {
					t.Errorf("writerTo=%v: delivered all %d bytes of bad content", viaWriterTo, len(got))
				}
			}
		})
	}
}

func TestValidateDescriptor(t *testing.T) {
	data := []byte("{}")
	d := digest.FromBytes(data)
	for _, tc := range []struct {
		name string
		desc v1.Descriptor
		ok   bool
	}{
		{"ok", v1.Descriptor{MediaType: "a", Digest: d, Size: 2}, true},
		{"data ok", v1.Descriptor{MediaType: "a", Digest: d, Size: 2, Data: data}, true},
		{"data wrong", v1.Descriptor{MediaType: "a", Digest: d, Size: 2, Data: []byte("[]")}, false},
		{"data size", v1.Descriptor{MediaType: "a", Digest: d, Size: 3, Data: data}, false},
		{"no media type", v1.Descriptor{Digest: d, Size: 2}, false},
		{"negative", v1.Descriptor{MediaType: "a", Digest: d, Size: -1}, false},
		{"no colon", v1.Descriptor{MediaType: "a", Digest: "abc", Size: 1}, false},
		{"sha384", v1.Descriptor{MediaType: "a", Digest: digest.SHA384.FromBytes(data), Size: 2}, false},
		{"sha512", v1.Descriptor{MediaType: "a", Digest: digest.SHA512.FromBytes(data), Size: 2}, true},
		{"upper hex", v1.Descriptor{MediaType: "a", Digest: digest.Digest(strings.ToUpper(string(d))), Size: 2}, false},
	} {
		if err := oci.ValidateDescriptor(tc.desc); (err == nil) != tc.ok {
			t.Errorf("%s: got %v", tc.name, err)
		}
	}
}

// buildIndex is a 4-platform index (the last, unknown/unknown, as
// attestation manifests are listed) and its images, in order.
func buildIndex(t *testing.T, _ *oci.Memory) (*oci.Index, []*oci.Image) {
	t.Helper()
	ref, err := ocitest.Build(ocitest.Spec{Platforms: ocitest.Platforms("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "unknown/unknown")})
	if err != nil {
		t.Fatal(err)
	}
	idx := ref.(*oci.Index)
	var imgs []*oci.Image
	for _, d := range idx.Manifests() {
		child, err := idx.Child(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, child.(*oci.Image))
	}
	return idx, imgs
}

func TestSelectPlatform(t *testing.T) {
	idx, imgs := buildIndex(t, oci.NewMemory())
	for _, tc := range []struct {
		want string
		i    int // -1: no match
	}{
		{"linux/amd64", 0}, {"linux/arm64", 1}, {"linux/arm64/v8", 1}, {"linux/aarch64", 1},
		{"linux/arm", 2}, {"linux/arm/v7", 2}, {"linux/arm/v6", -1}, {"linux/x86_64", 0},
		{"windows/amd64", -1}, {"linux/s390x", -1},
	} {
		p, err := oci.ParsePlatform(tc.want)
		if err != nil {
			t.Fatal(err)
		}
		d, err := idx.SelectPlatform(p)
		if tc.i < 0 {
			if !errors.Is(err, oci.ErrNoMatchingPlatform) {
				t.Errorf("%s: got %v", tc.want, err)
			} else if !strings.Contains(err.Error(), "linux/arm/v7") || strings.Contains(err.Error(), "unknown") {
				t.Errorf("%s: error does not list the offered platforms: %v", tc.want, err)
			}
			continue
		}
		if err != nil || d.Digest != imgs[tc.i].Digest() {
			t.Errorf("%s: got %v, %v", tc.want, d.Digest, err)
		}
	}
	for _, bad := range []string{"", "linux", "a/b/c/d", "linux//v7"} {
		if _, err := oci.ParsePlatform(bad); err == nil {
			t.Errorf("ParsePlatform(%q) accepted", bad)
		}
	}
}

func TestWalkAndDepth(t *testing.T) {
	mem := oci.NewMemory()
	idx, imgs := buildIndex(t, mem)
	var seen []digest.Digest
	if err := oci.Walk(context.Background(), idx, func(r oci.Ref) error { seen = append(seen, r.Digest()); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1+len(imgs) || seen[0] != idx.Digest() {
		t.Errorf("walk saw %d manifests", len(seen))
	}
	// A chain of indexes deeper than MaxDepth.
	var cur oci.Ref = imgs[0]
	mem.Add(imgs[0].Descriptor().MediaType, imgs[0].RawManifest())
	for i := 0; i < 8+2; i++ {
		next, err := mem.NewIndex(v1.Index{Manifests: []v1.Descriptor{cur.Descriptor()}})
		if err != nil {
			t.Fatal(err)
		}
		cur = next
	}
	err := oci.Walk(context.Background(), cur, func(oci.Ref) error { return nil })
	if !errors.Is(err, oci.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooDeep", err)
	}
}

func TestChildVerified(t *testing.T) {
	mem := oci.NewMemory()
	idx, imgs := buildIndex(t, mem)
	d := idx.Manifests()[0]
	// Wrong size in the descriptor.
	d2 := d
	d2.Size++
	if _, err := idx.Child(context.Background(), d2); !errors.Is(err, oci.ErrSizeMismatch) {
		t.Errorf("size: got %v", err)
	}
	// Media type contradicts the content.
	d3 := d
	d3.MediaType = v1.MediaTypeImageIndex
	if _, err := idx.Child(context.Background(), d3); !errors.Is(err, oci.ErrInvalidManifest) {
		t.Errorf("media type: got %v", err)
	}
	d4 := d
	d4.MediaType = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	if _, err := idx.Child(context.Background(), d4); !errors.Is(err, oci.ErrUnsupportedMediaType) {
		t.Errorf("schema1: got %v", err)
	}
	child, err := idx.Child(context.Background(), d)
	if err != nil || child.Digest() != imgs[0].Digest() {
		t.Fatal(err)
	}
}

func TestEmbeddedData(t *testing.T) {
	mem := oci.NewMemory()
	data := []byte(`{"architecture":"amd64","os":"linux"}`)
	cfg := v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: digest.FromBytes(data), Size: int64(len(data)), Data: data}
	img, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: []v1.Descriptor{}})
	if err != nil {
		t.Fatal(err)
	}
	// The source has no config blob: it must come from the descriptor.
	c, err := img.ReadConfig(context.Background())
	if err != nil || c.OS != "linux" {
		t.Fatalf("%v %v", c, err)
	}
}

func TestLayoutRoundTrip(t *testing.T) {
	mem := oci.NewMemory()
	idx, imgs := buildIndex(t, mem)
	dir := t.TempDir()
	l, err := oci.CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var done, skipped int
	var mu sync.Mutex
	opts := &oci.WriteOptions{Jobs: 2, Progress: func(p oci.BlobProgress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Done {
			done++
			if p.Skipped {
				skipped++
			}
		}
	}}
	if err := l.Write(ctx, "v1", idx, opts); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(ctx, "img", imgs[0], nil); err != nil {
		t.Fatal(err)
	}
	if done != 8 || skipped != 0 {
		t.Errorf("first write: %d done, %d skipped", done, skipped)
	}
	done, skipped = 0, 0
	if err := l.Write(ctx, "v1", idx, opts); err != nil {
		t.Fatal(err)
	}
	if done != 8 || skipped != 8 {
		t.Errorf("rewrite: %d done, %d skipped; want all skipped", done, skipped)
	}
	// Reopen and read back.
	l2, err := oci.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	ix, _ := l2.Index()
	if len(ix.Manifests) != 2 {
		t.Errorf("index.json has %d entries, want 2", len(ix.Manifests))
	}
	ref, err := l2.Read(ctx, "v1")
	if err != nil || ref.Digest() != idx.Digest() {
		t.Fatalf("read v1: %v", err)
	}
	img, err := oci.ImageForPlatform(context.Background(), ref, v1.Platform{OS: "linux", Architecture: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := img.ReadBlob(context.Background(), img.Layers()[0], 1<<20)
	want, _ := imgs[1].ReadBlob(context.Background(), imgs[1].Layers()[0], 1<<20)
	if err != nil || img.Digest() != imgs[1].Digest() || !bytes.Equal(b, want) {
		t.Fatalf("arm64 layer: %d bytes, %v", len(b), err)
	}
	if _, err := l2.Read(ctx, string(imgs[0].Digest())); err != nil {
		t.Errorf("read by digest: %v", err)
	}
	if _, err := l2.Read(ctx, "nope"); !errors.Is(err, oci.ErrNotFound) {
		t.Errorf("missing tag: %v", err)
	}
	// Corrupt a blob on disk: reading it fails verification, and a new
	// write repairs it.
	p := l2.BlobPath(img.Layers()[0].Digest)
	garbled := append([]byte(nil), want...)
	garbled[len(garbled)/2] ^= 0xff
	os.WriteFile(p, garbled, 0o644)
	if _, err := img.ReadBlob(context.Background(), img.Layers()[0], 1<<20); !errors.Is(err, oci.ErrDigestMismatch) {
		t.Errorf("corrupt blob: got %v", err)
	}
	if err := l.Write(ctx, "v1", idx, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, want) {
		t.Errorf("not repaired: %d bytes", len(b))
	}
	// A tag moved to another ref replaces the entry.
	if err := l.Write(ctx, "v1", imgs[1], nil); err != nil {
		t.Fatal(err)
	}
	d, _ := l.Find("v1")
	if d.Digest != imgs[1].Digest() {
		t.Errorf("tag not moved")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*.partial")); len(leftovers) != 0 {
		t.Errorf("partial files left: %v", leftovers)
	}
}

func TestLayoutResumesPartial(t *testing.T) {
	mem := oci.NewMemory()
	content := bytes.Repeat([]byte("0123456789"), 10000)
	layer := mem.Add(v1.MediaTypeImageLayer, content)
	cfg, _ := mem.AddJSON(v1.MediaTypeImageConfig, v1.Image{})
	img, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: []v1.Descriptor{layer}})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := oci.CreateLayout(t.TempDir())
	p := l.BlobPath(layer.Digest)
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p+".partial", content[:40000], 0o644)
	resumed := false
	if err := l.Write(context.Background(), "", img, &oci.WriteOptions{Progress: func(bp oci.BlobProgress) {
		if bp.Resumed && bp.Descriptor.Digest == layer.Digest {
			resumed = true
		}
	}}); err != nil {
		t.Fatal(err)
	}
	if !resumed {
		t.Error("did not resume the partial download")
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, content) {
		t.Error("resumed blob differs")
	}
	// A partial file with wrong bytes fails verification, is removed,
	// and the blob is fetched once more from the start, in the same Write.
	os.Remove(p)
	bad := append([]byte(nil), content[:40000]...)
	bad[0] = 'x'
	os.WriteFile(p+".partial", bad, 0o644)
	if err := l.Write(context.Background(), "", img, nil); err != nil {
		t.Fatalf("write over a bad partial: %v", err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, content) {
		t.Error("blob differs after a bad partial")
	}
	if _, err := os.Stat(p + ".partial"); err == nil {
		t.Error("bad partial file kept")
	}
}
