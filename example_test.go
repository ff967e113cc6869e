package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"net/url"
	"os"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// Serve refs from the in-memory registry in a test.
func ExampleServer() {
	mem := oci.NewMemory()
	layer := mem.Add(v1.MediaTypeImageLayer, []byte("layer bytes"))
	config := mem.Add(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	img, _ := mem.NewImage(v1.Manifest{Config: config, Layers: []v1.Descriptor{layer}})

	srv := registry.NewServer()
	srv.AddRef("example/app", "v1", img)
	ts := httptest.NewServer(srv)
	defer ts.Close()

	u, _ := url.Parse(ts.URL)
	c := (&registry.Registry{Scheme: "http", Host: u.Host}).Repository("example/app")
	tags, _ := c.Tags(context.Background())
	fmt.Println(tags)
	// Output: [v1]
}

// Read an image by tag and stream a layer: the manifest is verified when
// read, the layer while it streams.
func ExampleClient_Read() {
	srv := registry.NewServer()
	mem := oci.NewMemory()
	layer := mem.Add(v1.MediaTypeImageLayer, []byte("hello from a layer"))
	config := mem.Add(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	img, _ := mem.NewImage(v1.Manifest{Config: config, Layers: []v1.Descriptor{layer}})
	srv.AddRef("example/app", "v1", img)
	ts := httptest.NewServer(srv)
	defer ts.Close()

	ref, err := registry.ParseReference(ts.Listener.Addr().String() + "/example/app:v1")
	if err != nil {
		panic(err)
	}
	c := ref.Client() // loopback: HTTPS first, then plain HTTP as this server speaks it
	got, err := c.Read(context.Background(), ref.TagOrDigest())
	if err != nil {
		panic(err)
	}
	image := got.(*oci.Image)
	rc, err := image.OpenBlob(context.Background(), image.Layers()[0])
	if err != nil {
		panic(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc) // ends with an error, not io.EOF, on a mismatch
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))
	// Output: hello from a layer
}

// Test a client's authentication against the server's token mode: anonymous
// pulls are refused for the private repository, the user's credentials work.
func ExampleServerAuth() {
	mem := oci.NewMemory()
	config := mem.Add(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	img, _ := mem.NewImage(v1.Manifest{Config: config, Layers: []v1.Descriptor{}})

	srv := registry.NewServer()
	srv.Auth = &registry.ServerAuth{
		Users: map[string]registry.ServerUser{"alice": {Password: "s3cret", Repositories: []string{"private/app"}}},
	}
	srv.AddRef("private/app", "v1", img)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	u, _ := url.Parse(ts.URL)

	anonymous := (&registry.Registry{Scheme: "http", Host: u.Host}).Repository("private/app")
	_, err := anonymous.Read(context.Background(), "v1")
	fmt.Println("anonymous:", errors.Is(err, registry.ErrUnauthorized))

	alice := (&registry.Registry{Scheme: "http", Host: u.Host,
		Credentials: registry.StaticCredentials("alice", "s3cret"),
	}).Repository("private/app")
	ref, err := alice.Read(context.Background(), "v1")
	fmt.Println("alice:", err == nil && ref.Digest() == img.Digest())
	// Output:
	// anonymous: true
	// alice: true
}

// Fetch an image by digest into an OCI layout on disk, as a hermetic build
// does: every blob is verified before it is renamed into place, blobs already
// present and verified are skipped, and an interrupted write resumes.
func ExampleClient_Read_toLayout() {
	mem := oci.NewMemory()
	layer := mem.Add(v1.MediaTypeImageLayer, []byte("pinned layer"))
	config := mem.Add(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	img, _ := mem.NewImage(v1.Manifest{Config: config, Layers: []v1.Descriptor{layer}})
	srv := registry.NewServer()
	srv.AddRef("example/app", "v1", img)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	pinned := string(img.Digest()) // what the build file records

	ref, _ := registry.ParseReference(ts.Listener.Addr().String() + "/example/app@" + pinned)
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
	if err := layout.Write(context.Background(), "app", got, nil); err != nil {
		panic(err)
	}
	again, _ := layout.Read(context.Background(), "app")
	fmt.Println(again.Digest() == img.Digest())
	// Output: true
}

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
