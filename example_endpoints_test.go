package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

// Pull through a mirror first, the registry after: the mirror serves what
// it has, the registry the rest.
func ExampleEndpoint() {
	mem := oci.NewMemory()
	config := mem.Add(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	img, _ := mem.NewImage(v1.Manifest{Config: config, Layers: []v1.Descriptor{mem.Add(v1.MediaTypeImageLayer, []byte("layer"))}})
	upstream, mirror := registry.NewServer(), registry.NewServer()
	upstream.AddRef("example/app", "v1", img)
	mirror.AddRef("example/app", "v1", img)
	up, mi := httptest.NewServer(upstream), httptest.NewServer(mirror)
	defer up.Close()
	defer mi.Close()

	ep, err := registry.ParseEndpoint(mi.URL) // "https://mirror.internal/prefix" in real life
	if err != nil {
		panic(err)
	}
	u, _ := url.Parse(up.URL)
	c := &registry.Client{Scheme: "http", Host: u.Host, Repository: "example/app", Mirrors: []registry.Endpoint{ep}}
	got, err := c.Read(context.Background(), "v1") // asked of the mirror, with ns=<registry host>
	if err != nil {
		panic(err)
	}
	fmt.Println(got.Digest() == img.Digest())
	// Output: true
}

// Read the pull allowance a registry states, and the limit in a 429.
func ExampleClient_RateLimit() {
	mem := oci.NewMemory()
	config := mem.Add(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	img, _ := mem.NewImage(v1.Manifest{Config: config})
	srv := registry.NewServer()
	srv.AddRef("library/app", "v1", img)
	ts := httptest.NewServer(&faults.PullLimit{Next: srv, Limit: 1, Window: 6 * time.Hour})
	defer ts.Close()

	u, _ := url.Parse(ts.URL)
	c := &registry.Client{Scheme: "http", Host: u.Host, Repository: "library/app"}
	ctx := context.Background()
	c.Read(ctx, "v1")
	rl, _ := c.RateLimit()
	fmt.Println(rl.Remaining, "of", rl.Limit, "left per", rl.Window)
	_, err := c.Read(ctx, "v1")
	var ce *registry.ClientError
	if errors.As(err, &ce) && ce.RateLimit != nil {
		fmt.Println("refused:", errors.Is(err, registry.ErrTooManyRequests), "resets in about", ce.RateLimit.Reset.Sub(time.Now()).Round(time.Hour))
	}
	// Output:
	// 0 of 1 left per 6h0m0s
	// refused: true resets in about 6h0m0s
}
