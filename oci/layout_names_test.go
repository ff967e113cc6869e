package oci_test

import (
	"context"
	"errors"
	"os"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

func build(t *testing.T, spec ocitest.Spec) oci.Ref {
	t.Helper()
	ref, err := ocitest.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// Two images with the same tag keep their own entries; a second write of
// the same image replaces only its own; a tag they share is ambiguous and
// the full names find each.
func TestLayoutEntriesByImageName(t *testing.T) {
	ctx := context.Background()
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, b, a2 := build(t, ocitest.Spec{Seed: 1}), build(t, ocitest.Spec{Seed: 2}), build(t, ocitest.Spec{Seed: 3})
	write := func(ref oci.Ref, name string) {
		if err := l.Write(ctx, "v1", ref, &oci.WriteOptions{ImageName: name}); err != nil {
			t.Fatal(err)
		}
	}
	write(a, "example.com/demo/sample:v1")
	if err := l.Write(ctx, "v1", b, &oci.WriteOptions{ImageName: "example.com/other/app:v1",
		Annotations: map[string]string{"com.example.source": "test", v1.AnnotationRefName: "ignored"}}); err != nil {
		t.Fatal(err)
	}
	write(a2, "example.com/demo/sample:v1")
	idx, err := l.Index()
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 2 {
		t.Fatalf("index has %d entries, want 2: %+v", len(idx.Manifests), idx.Manifests)
	}
	for name, want := range map[string]oci.Ref{"example.com/demo/sample:v1": a2, "example.com/other/app:v1": b} {
		d, err := l.Find(name)
		if err != nil || d.Digest != want.Digest() {
			t.Errorf("Find(%q) = %s, %v; want %s", name, d.Digest, err, want.Digest())
		}
		if d.Annotations[v1.AnnotationRefName] != "v1" {
			t.Errorf("entry %s lost its ref.name tag: %v", name, d.Annotations)
		}
	}
	if d, _ := l.Find("example.com/other/app:v1"); d.Annotations["com.example.source"] != "test" {
		t.Errorf("extra annotations not recorded: %v", d.Annotations)
	}
	if _, err := l.Find("v1"); !errors.Is(err, oci.ErrAmbiguous) {
		t.Errorf("Find(v1) with two images tagged v1: %v, want ErrAmbiguous", err)
	}
}

// Platforms writes the index and only the selected children's content.
func TestLayoutWritePlatformsSubset(t *testing.T) {
	ctx := context.Background()
	amd, arm, s390 := v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64"}, v1.Platform{OS: "linux", Architecture: "s390x"}
	ref := build(t, ocitest.Spec{Seed: 9, Layers: 1, Platforms: []v1.Platform{amd, arm, s390}})
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(ctx, "v1", ref, &oci.WriteOptions{Platforms: []v1.Platform{amd, s390}}); err != nil {
		t.Fatal(err)
	}
	// The layout names an index of the written children only, annotated
	// with the original's digest: it never claims what it lacks.
	got, err := l.Read(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	sub, ok := got.(*oci.Index)
	if !ok || got.Digest() == ref.Digest() || len(sub.Manifests()) != 2 || sub.Annotations()[oci.AnnotationSubsetOf] != string(ref.Digest()) {
		t.Fatalf("Read: %s, want a 2-child index cut from %s", got.Digest(), ref.Digest())
	}
	for _, p := range []v1.Platform{amd, s390} {
		img, err := oci.ImageForPlatform(ctx, got, p)
		if err != nil {
			t.Fatalf("%s: %v", oci.PlatformString(p), err)
		}
		for _, d := range img.Layers() {
			if _, err := img.ReadBlob(ctx, d, 1<<20); err != nil {
				t.Errorf("%s layer: %v", oci.PlatformString(p), err)
			}
		}
	}
	if _, err := oci.ImageForPlatform(ctx, got, arm); !errors.Is(err, oci.ErrNoMatchingPlatform) {
		t.Errorf("unselected platform: %v, want ErrNoMatchingPlatform (not named)", err)
	}
}

// A writer that finds another process's lock on a blob reports Waiting.
func TestLayoutWriteReportsWaiting(t *testing.T) {
	if !lockable() {
		t.Skip("no flock here")
	}
	ctx := context.Background()
	ref := build(t, ocitest.Spec{Seed: 11, Layers: 1, LayerSize: 4096})
	dir := t.TempDir()
	l, err := oci.CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	layer := ref.(*oci.Image).Layers()[0]
	if err := os.MkdirAll(dir+"/blobs/sha256", 0o755); err != nil {
		t.Fatal(err)
	}
	release := holdLock(t, l.BlobPath(layer.Digest)+".partial")
	waited := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- l.Write(ctx, "v1", ref, &oci.WriteOptions{Progress: func(p oci.BlobProgress) {
			if p.Waiting && p.Descriptor.Digest == layer.Digest {
				select {
				case waited <- struct{}{}:
				default:
				}
			}
		}})
	}()
	<-waited
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
