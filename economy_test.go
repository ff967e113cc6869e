package registry_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

// TestRequestEconomy counts requests at the server for a pull of a
// 100-layer image's layers: one manifest request and one request per blob,
// no ping and no HEAD; with token auth exactly one challenged request and
// one token request more. Parallel reads open no more connections than the
// parallelism.
func TestRequestEconomy(t *testing.T) {
	mem := oci.NewMemory()
	sizes := make([]int, 100)
	for i := range sizes {
		sizes[i] = 4 << 10
	}
	img := newImage(t, mem, linuxAMD64, sizes...)
	for _, tc := range []struct {
		auth     bool
		parallel int
		want     int
	}{{false, 1, 101}, {true, 1, 103}, {false, 8, 101}, {true, 8, 103}} {
		t.Run(fmt.Sprintf("auth=%v/parallel=%d", tc.auth, tc.parallel), func(t *testing.T) {
			s := registry.NewServer()
			if tc.auth {
				s.Auth = &registry.ServerAuth{Anonymous: []string{"*"}}
			}
			mustAdd(t, s, "eco/img", "v1", img)
			inj := &faults.Injector{Next: s}
			ts, conns := startCounted(t, inj)
			defer ts.Close()
			var opened int64
			c := clientFor(t, ts, "eco/img")
			c.Registry().Transport = nil // the client's own transport, as callers get it
			c.Registry().MaxConnsPerHost = tc.parallel
			ref, err := c.Read(context.Background(), "v1")
			if err != nil {
				t.Fatal(err)
			}
			layers := ref.(*oci.Image).Layers()
			work := make(chan v1.Descriptor)
			var wg sync.WaitGroup
			for i := 0; i < tc.parallel; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for d := range work {
						rc, err := ref.(*oci.Image).OpenBlob(context.Background(), d)
						if err != nil {
							t.Error(err)
							continue
						}
						if _, err := io.Copy(io.Discard, rc); err != nil {
							t.Error(err)
						}
						rc.Close()
					}
				}()
			}
			for _, d := range layers {
				work <- d
			}
			close(work)
			wg.Wait()
			if got := inj.Requests(); got != tc.want {
				t.Errorf("requests: got %d, want %d", got, tc.want)
			}
			if n := inj.RequestsTo("HEAD "); n != 0 {
				t.Errorf("%d HEAD requests", n)
			}
			opened = conns.total.Load()
			if opened > int64(tc.parallel) {
				t.Errorf("opened %d connections for %d parallel reads", opened, tc.parallel)
			}
			t.Logf("%d requests, %d connections", inj.Requests(), opened)
		})
	}
}

// TestNoDuplicateBlobFetch: a layout write of an index whose images share
// layers (and one image listing a layer twice) fetches each blob once.
func TestNoDuplicateBlobFetch(t *testing.T) {
	mem := oci.NewMemory()
	ctx := context.Background()
	shared := mem.Add(v1.MediaTypeImageLayerGzip, randomBytes(t, 50_000))
	var ms []v1.Descriptor
	unique := map[string]bool{string(shared.Digest): true}
	for _, p := range []v1.Platform{linuxAMD64, linuxARM64, linuxARMv7} {
		cfg, _ := mem.AddJSON(v1.MediaTypeImageConfig, v1.Image{Platform: p})
		own := mem.Add(v1.MediaTypeImageLayerGzip, randomBytes(t, 10_000))
		unique[string(cfg.Digest)], unique[string(own.Digest)] = true, true
		img, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: []v1.Descriptor{shared, own, shared}})
		if err != nil {
			t.Fatal(err)
		}
		d := img.Descriptor()
		pp := p
		d.Platform = &pp
		ms = append(ms, d)
	}
	idx, err := mem.NewIndex(v1.Index{Manifests: ms})
	if err != nil {
		t.Fatal(err)
	}
	s := registry.NewServer()
	mustAdd(t, s, "dup/img", "v1", idx)
	inj := &faults.Injector{Next: s}
	c := clientFor(t, serve(t, inj), "dup/img")
	ref, err := c.Read(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(ctx, "v1", ref, &oci.WriteOptions{Jobs: 8}); err != nil {
		t.Fatal(err)
	}
	if got := inj.RequestsTo("/blobs/"); got != len(unique) {
		t.Errorf("blob requests: got %d, want %d (one per distinct blob)", got, len(unique))
	}
	if got := inj.RequestsTo("/manifests/"); got != 4 {
		t.Errorf("manifest requests: got %d, want 4", got)
	}
}
