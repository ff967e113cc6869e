package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// cmdDemo starts the in-memory registry on a loopback port with token auth,
// adds a generated 3-platform image, pulls it with the real client into a
// temporary layout, verifies it, and says what to try next.
var demoCommand = &command{
	name: "demo", args: "", min: 0, max: 0,
	summary:  "pull a generated image from a local authenticating registry (no network needed)",
	examples: []string{"ocipull demo", "ocipull demo --dir ./demo-layout"},
	define: func(f *flags, e *env) func(context.Context) error {
		dir := f.String("dir", "", "", "the layout `DIR` to pull into (default: a new temporary directory)")
		return func(ctx context.Context) error { return demo(ctx, *dir, e) }
	},
}

// demo starts the in-memory registry on a loopback port with token auth,
// adds a generated 3-platform image, pulls it with the real client into a
// temporary layout, verifies it, and says what to try next.
func demo(ctx context.Context, dirFlag string, e *env) error {
	dir, stdout := &dirFlag, e.stdout
	start := time.Now()
	mem := oci.NewMemory()
	idx, err := sampleIndex(ctx, mem)
	if err != nil {
		return fmt.Errorf("building the sample image: %w", err)
	}
	srv := registry.NewServer()
	srv.Auth = &registry.ServerAuth{
		Service: "ocipull-demo",
		Users:   map[string]registry.ServerUser{"demo": {Password: "demo", Repositories: []string{"*"}}},
	}
	if err := srv.AddRef("demo/sample", "v1", idx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var requests, tokens atomic.Int64
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.URL.Path == "/token" {
			tokens.Add(1)
		}
		srv.ServeHTTP(w, r)
	})
	hs := &http.Server{Handler: counted, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	host := ln.Addr().String()
	fmt.Fprintf(stdout, "1. started an in-memory registry at http://%s with token auth (user demo, password demo)\n", host)
	fmt.Fprintf(stdout, "   and added demo/sample:v1, an index of 3 platforms (linux/amd64, linux/arm64/v8, linux/arm/v7)\n\n")

	target := *dir
	if target == "" {
		if target, err = os.MkdirTemp("", "ocipull-demo-"); err != nil {
			return err
		}
	}
	ref, _ := registry.ParseReference(host + "/demo/sample:v1")
	c := ref.Client()
	c.Registry().Credentials = registry.StaticCredentials("demo", "demo")
	fmt.Fprintf(stdout, "2. pulling %s into the OCI layout %s\n", ref, target)
	got, err := pull(ctx, c, ref, target, pullOptions{jobs: 4, timeout: defaultMetadataTimeout, format: "oci"}, e)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "   %d requests to the registry, %d of them for a token\n\n", requests.Load(), tokens.Load())

	fmt.Fprintf(stdout, "3. verifying the layout: every manifest and blob re-read from disk and hashed\n")
	l, err := oci.OpenLayout(target)
	if err != nil {
		return err
	}
	back, err := l.Read(ctx, "v1")
	if err != nil {
		return err
	}
	if back.Digest() != got.Digest() || got.Digest() != idx.Digest() {
		return fmt.Errorf("digest mismatch: registry %s, pulled %s, layout %s", idx.Digest(), got.Digest(), back.Digest())
	}
	var blobs int
	var total int64
	err = oci.Walk(context.Background(), back, func(r oci.Ref) error {
		img, ok := r.(*oci.Image)
		if !ok {
			return nil
		}
		for _, d := range img.Blobs() {
			rc, err := img.OpenBlob(context.Background(), d)
			if err != nil {
				return err
			}
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return err
			}
			blobs++
			total += n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("verifying: %w", err)
	}
	fmt.Fprintf(stdout, "   ok: %s verified, %d blobs, %s, in %s overall\n\n", back.Digest(), blobs, humanBytes(total), time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "next, try:\n  go run ./cmd/ocipull serve --addr 127.0.0.1:5000 --repo demo/sample %s\n", target)
	fmt.Fprintf(stdout, "  go run ./cmd/ocipull inspect 127.0.0.1:5000/demo/sample:v1\n")
	fmt.Fprintf(stdout, "  go run ./cmd/ocipull manifest -p linux/arm64 oci:%s:v1\n", target)
	fmt.Fprintf(stdout, "  go run ./cmd/ocipull pull --format docker-archive 127.0.0.1:5000/demo/sample:v1 /tmp/sample.tar\n")
	fmt.Fprintf(stdout, "  go run ./cmd/ocipull help\n")
	return nil
}

// sampleIndex builds an index of three real images (ocitest.Build):
// gzip-compressed tar layers whose config lists their diff IDs, so that any
// client can pull and unpack them — two layers of 1 MiB each per platform.
func sampleIndex(context.Context, *oci.Memory) (*oci.Index, error) {
	ref, err := ocitest.Build(ocitest.Spec{Seed: 2026, Layers: 2, LayerSize: 1 << 20,
		Platforms: ocitest.Platforms("linux/amd64", "linux/arm64/v8", "linux/arm/v7")})
	if err != nil {
		return nil, err
	}
	return ref.(*oci.Index), nil
}
