package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// Serve refs from the in-memory registry in a test: content from
// ocitest, one call.
func ExampleServer() {
	img, err := ocitest.Build(ocitest.Spec{})
	if err != nil {
		panic(err)
	}
	srv := registry.NewServer()
	if err := srv.AddRef("example/app", "v1", img); err != nil {
		panic(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	u, _ := url.Parse(ts.URL)
	c := (&registry.Registry{Scheme: "http", Host: u.Host}).Repository("example/app")
	tags, err := c.Tags(context.Background())
	fmt.Println(tags, err)
	// Output: [v1] <nil>
}

// Read an image by tag and stream a layer: the manifest is verified when
// read, the layer while it streams. What a ref is (an image, an index)
// is a type switch.
func ExampleClient_Read() {
	idx, err := ocitest.Build(ocitest.Spec{Platforms: ocitest.Platforms("linux/amd64", "linux/arm64")})
	if err != nil {
		panic(err)
	}
	srv := registry.NewServer()
	if err := srv.AddRef("example/app", "v1", idx); err != nil {
		panic(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	ref, err := registry.ParseReference(ts.Listener.Addr().String() + "/example/app:v1")
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	got, err := ref.Client().Read(ctx, ref.TagOrDigest()) // loopback: HTTPS first, then plain HTTP as this server speaks it
	if err != nil {
		panic(err)
	}
	var image *oci.Image
	switch r := got.(type) {
	case *oci.Index:
		fmt.Println("an index of", len(r.Manifests()), "images")
		if image, err = oci.ImageForPlatform(ctx, r, ocitest.Platforms("linux/arm64")[0]); err != nil {
			panic(err)
		}
	case *oci.Image:
		image = r
	}
	rc, err := image.OpenBlob(ctx, image.Layers()[0])
	if err != nil {
		panic(err)
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc) // ends with an error, not io.EOF, on a mismatch
	fmt.Println(n == image.Layers()[0].Size, err)
	// Output:
	// an index of 2 images
	// true <nil>
}

// Test a client's authentication against the server's token mode: anonymous
// pulls are refused for the private repository, the user's credentials work.
func ExampleServerAuth() {
	img, err := ocitest.Build(ocitest.Spec{})
	if err != nil {
		panic(err)
	}
	reg := ocitest.NewRegistry(exampleT{}, &registry.ServerAuth{
		Users: map[string]registry.ServerUser{"alice": {Password: "s3cret", Repositories: []string{"private/app"}}},
	}, map[string]oci.Ref{"private/app:v1": img})
	defer reg.HTTP.Close()

	_, err = reg.Client("private/app").Read(context.Background(), "v1")
	fmt.Println("anonymous:", errors.Is(err, registry.ErrUnauthorized))

	ref, err := reg.Client("private/app", "alice", "s3cret").Read(context.Background(), "v1")
	fmt.Println("alice:", err == nil && ref.Digest() == img.Digest())
	// Output:
	// anonymous: true
	// alice: true
}

// Fetch an image by digest into an OCI layout on disk, as a hermetic build
// does, with progress: every blob is verified before it is renamed into
// place, blobs already present and verified are skipped, and an
// interrupted write resumes. Progress may be called from several
// goroutines at once.
func ExampleClient_Read_toLayout() {
	img, err := ocitest.Build(ocitest.Spec{Layers: 3})
	if err != nil {
		panic(err)
	}
	srv := registry.NewServer()
	if err := srv.AddRef("example/app", "v1", img); err != nil {
		panic(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	pinned := string(img.Digest()) // what the build file records

	ref, err := registry.ParseReference(ts.Listener.Addr().String() + "/example/app@" + pinned)
	if err != nil {
		panic(err)
	}
	got, err := ref.Client().Read(context.Background(), ref.TagOrDigest())
	if err != nil {
		panic(err)
	}
	dir, _ := os.MkdirTemp("", "layout-")
	defer os.RemoveAll(dir)
	layout, err := oci.CreateLayout(dir)
	if err != nil {
		panic(err)
	}
	var mu sync.Mutex
	done := 0
	progress := func(p oci.BlobProgress) {
		if p.Done {
			mu.Lock()
			done++
			mu.Unlock()
		}
	}
	if err := layout.Write(context.Background(), "app", got, &oci.WriteOptions{Progress: progress}); err != nil {
		panic(err)
	}
	again, err := layout.Read(context.Background(), "app")
	fmt.Println(again.Digest() == img.Digest(), err, done, "blobs done")
	// Output: true <nil> 4 blobs done
}

// exampleT is the part of testing.TB that ocitest needs, for an Example.
type exampleT struct{}

func (exampleT) Helper()                        {}
func (exampleT) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
func (exampleT) Cleanup(func())                 {}

// A server with token auth and a fault in front: alice pulls a private
// image through a 503 that the client retries.
func ExampleServerAuth_withFaults() {
	img, _ := ocitest.Build(ocitest.Spec{})
	srv := registry.NewServer()
	srv.Auth = &registry.ServerAuth{Users: map[string]registry.ServerUser{
		"alice": {Password: "s3cret", Repositories: []string{"private/app"}},
	}}
	srv.AddRef("private/app", "v1", img)
	inj := &faults.Injector{Next: srv}
	inj.Add(faults.Rule{Path: "/manifests/", Nth: 1, Fault: faults.Status(503, "0")})
	ts := httptest.NewServer(inj)
	defer ts.Close()

	u, _ := url.Parse(ts.URL)
	anon := (&registry.Registry{Scheme: "http", Host: u.Host}).Repository("private/app")
	_, err := anon.Read(context.Background(), "v1")
	fmt.Println(errors.Is(err, registry.ErrUnauthorized))

	alice := (&registry.Registry{Scheme: "http", Host: u.Host,
		Credentials: registry.StaticCredentials("alice", "s3cret"),
	}).Repository("private/app")
	got, err := alice.Read(context.Background(), "v1")
	fmt.Println(got.Digest() == img.Digest(), err)
	// Output:
	// true
	// true <nil>
}
