package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
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
	c := (&registry.Registry{Scheme: "http", Host: u.Host, Mirrors: []registry.Endpoint{ep}}).Repository("example/app")
	got, err := c.Read(context.Background(), "v1") // asked of the mirror, with ns=<registry host>
	if err != nil {
		panic(err)
	}
	fmt.Println(got.Digest() == img.Digest())
	// Output: true
}

// Read the pull allowance a registry states, and the limit in a 429.
func ExampleRegistry_RateLimit() {
	mem := oci.NewMemory()
	config := mem.Add(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	img, _ := mem.NewImage(v1.Manifest{Config: config})
	srv := registry.NewServer()
	srv.AddRef("library/app", "v1", img)
	ts := httptest.NewServer(&faults.PullLimit{Next: srv, Limit: 1, Window: 6 * time.Hour})
	defer ts.Close()

	u, _ := url.Parse(ts.URL)
	c := (&registry.Registry{Scheme: "http", Host: u.Host}).Repository("library/app")
	ctx := context.Background()
	c.Read(ctx, "v1")
	rl, _ := c.Registry().RateLimit()
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

// Configure mirrors, certificates and extra headers from a containerd
// certs.d tree (/etc/containerd/certs.d and Docker's certs.d when no
// directory is named).
func ExampleRegistry_LoadHostsDir() {
	mem := oci.NewMemory()
	config := mem.Add(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	img, _ := mem.NewImage(v1.Manifest{Config: config})
	mirror := registry.NewServer()
	mirror.AddRef("example/app", "v1", img)
	mi := httptest.NewServer(mirror)
	defer mi.Close()

	// certs.d/registry.example/hosts.toml: the mirror first, then the
	// registry (which this example never needs).
	root, _ := os.MkdirTemp("", "certs.d")
	defer os.RemoveAll(root)
	os.MkdirAll(filepath.Join(root, "registry.example"), 0o755)
	os.WriteFile(filepath.Join(root, "registry.example", "hosts.toml"), []byte(`
server = "https://registry.example"

[host."`+mi.URL+`"]
  capabilities = ["pull", "resolve"]
  dial_timeout = "2s"
  [host."`+mi.URL+`".header]
    X-Team = "build"
`), 0o644)

	c := (&registry.Registry{Host: "registry.example"}).Repository("example/app")
	if err := c.Registry().LoadHostsDir(root); err != nil {
		panic(err)
	}
	fmt.Println(len(c.Registry().Mirrors), c.Registry().Mirrors[0].DialTimeout, c.Registry().Mirrors[0].Header.Get("X-Team"), c.Registry().MirrorsOnly)
	got, err := c.Read(context.Background(), "v1") // from the mirror
	if err != nil {
		panic(err)
	}
	fmt.Println(got.Digest() == img.Digest())
	// Output:
	// 1 2s build false
	// true
}
