package ocitest_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// Build a three-platform index of real tar+gzip images and serve it.
func ExampleBuild() {
	idx, err := ocitest.Build(ocitest.Spec{Seed: 1, Layers: 2, Platforms: ocitest.Platforms("linux/amd64", "linux/arm64/v8", "linux/arm/v7")})
	if err != nil {
		panic(err)
	}
	srv := registry.NewServer()
	srv.AddRef("example/app", "v1", idx)
	ts := httptest.NewServer(srv)
	defer ts.Close()

	c := (&registry.Registry{Scheme: "http", Host: ts.Listener.Addr().String()}).Repository("example/app")
	got, _ := c.Read(context.Background(), "v1")
	fmt.Println(len(got.(*oci.Index).Manifests()), got.Digest() == idx.Digest())
	// Output: 3 true
}

// Record what a client asks of a server.
func ExampleRecorder() {
	img, _ := ocitest.Build(ocitest.Spec{})
	srv := registry.NewServer()
	srv.AddRef("example/app", "v1", img)
	rec := &ocitest.Recorder{}
	srv.OnRequest = rec.Record
	ts := httptest.NewServer(srv)
	defer ts.Close()

	c := (&registry.Registry{Scheme: "http", Host: ts.Listener.Addr().String()}).Repository("example/app")
	c.Resolve(context.Background(), "v1")
	for _, r := range rec.Requests() {
		fmt.Println(r.Method, r.Path, r.Status)
	}
	// Output: HEAD /v2/example/app/manifests/v1 200
}
