package mirror_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/mirror"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// A pull-through cache in front of a registry: the first pull fetches
// upstream, verified, into the cache's store; the second is served from
// it.
func Example() {
	img, _ := ocitest.Build(ocitest.Spec{Seed: 1})
	t := &exampleT{}
	defer t.cleanup()
	upstream := ocitest.NewRegistry(t, nil, map[string]oci.Ref{"example/app:v1": img})

	dir, _ := os.MkdirTemp("", "cache")
	defer os.RemoveAll(dir)
	cache, err := mirror.Open(dir, mirror.Config{Upstreams: map[string]mirror.Upstream{"": {URL: upstream.HTTP.URL}}})
	if err != nil {
		panic(err)
	}
	defer cache.Close()
	srv := httptest.NewServer(cache)
	defer srv.Close()

	// One registry handle for the cache: its repositories share
	// connections.
	reg := &registry.Registry{Scheme: "http", Host: srv.Listener.Addr().String()}
	ctx := context.Background()
	for range 2 {
		ref, err := reg.Repository("example/app").Read(ctx, "v1")
		if err != nil {
			panic(err)
		}
		layer := ref.(*oci.Image).Layers()[0]
		if _, err := ref.(*oci.Image).ReadBlob(ctx, layer, 1<<20); err != nil {
			panic(err)
		}
	}
	fmt.Println("upstream manifest GETs:", upstream.Count("GET", "/manifests/"))
	// Output: upstream manifest GETs: 1
}

// exampleT is the part of testing.TB that ocitest needs, for an Example.
type exampleT struct{ done []func() }

func (t *exampleT) Helper()                        {}
func (t *exampleT) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
func (t *exampleT) Cleanup(f func())               { t.done = append(t.done, f) }
func (t *exampleT) cleanup() {
	for i := len(t.done) - 1; i >= 0; i-- {
		t.done[i]()
	}
}
