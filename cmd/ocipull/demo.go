package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"sort"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// cmdDemo starts the in-memory registry on a loopback port with token auth,
// adds a generated 3-platform image, pulls it with the real client into a
// temporary layout, verifies it, and says what to try next.
func cmdDemo(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "[flags]", stderr)
	dir := fs.String("dir", "", "layout directory to pull into (default: a new temporary directory)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErr("demo takes no arguments")
	}
	start := time.Now()
	mem := oci.NewMemory()
	idx, err := sampleIndex(ctx, mem)
	if err != nil {
		return fmt.Errorf("demo: building the sample image: %w", err)
	}
	srv := registry.NewServer()
	srv.Auth = &registry.ServerAuth{
		Service: "ocipull-demo",
		Users:   map[string]registry.ServerUser{"demo": {Password: "demo", Repositories: []string{"*"}}},
	}
	if err := srv.AddRef("demo/sample", "v1", idx); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
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
			return fmt.Errorf("demo: %w", err)
		}
	}
	ref, _ := registry.ParseReference(host + "/demo/sample:v1")
	c := ref.Client()
	c.Credentials = registry.StaticCredentials("demo", "demo")
	fmt.Fprintf(stdout, "2. pulling %s into the OCI layout %s\n", ref, target)
	got, err := pull(ctx, c, ref, target, pullOptions{jobs: 4, timeout: defaultMetadataTimeout}, stdout)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(stdout, "   %d requests to the registry, %d of them for a token\n\n", requests.Load(), tokens.Load())

	fmt.Fprintf(stdout, "3. verifying the layout: every manifest and blob re-read from disk and hashed\n")
	l, err := oci.OpenLayout(target)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	back, err := l.Read(ctx, "v1")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if back.Digest() != got.Digest() || got.Digest() != idx.Digest() {
		return fmt.Errorf("demo: digest mismatch: registry %s, pulled %s, layout %s", idx.Digest(), got.Digest(), back.Digest())
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
		return fmt.Errorf("demo: verifying: %w", err)
	}
	fmt.Fprintf(stdout, "   ok: %s verified, %d blobs, %s, in %s overall\n\n", back.Digest(), blobs, humanBytes(total), time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "next, try:\n  go run ./cmd/ocipull serve --addr 127.0.0.1:5000 --repo demo/sample %s\n", target)
	fmt.Fprintf(stdout, "  go run ./cmd/ocipull inspect 127.0.0.1:5000/demo/sample:v1\n")
	fmt.Fprintf(stdout, "  go run ./cmd/ocipull pull --platform linux/arm64 127.0.0.1:5000/demo/sample:v1 /tmp/arm64-layout\n")
	return nil
}

// sampleIndex builds an index of three real images — gzip-compressed tar
// layers whose config lists their diff IDs — so that any client can pull
// and unpack them: a base layer with a 2 MiB incompressible payload and a
// small layer naming the platform.
func sampleIndex(ctx context.Context, mem *oci.Memory) (*oci.Index, error) {
	var ms []v1.Descriptor
	for _, p := range []v1.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64", Variant: "v8"},
		{OS: "linux", Architecture: "arm", Variant: "v7"},
	} {
		created := time.Now().UTC().Truncate(time.Second)
		payload := make([]byte, 2<<20)
		rand.Read(payload)
		files := []map[string][]byte{
			{"payload.bin": payload},
			{"etc/ocipull-demo": []byte("ocipull demo image for " + oci.PlatformString(p) + "\n")},
		}
		var layers []v1.Descriptor
		var diffIDs []digest.Digest
		for _, f := range files {
			compressed, diffID, err := tarGzip(f, created)
			if err != nil {
				return nil, err
			}
			layers = append(layers, mem.Add(v1.MediaTypeImageLayerGzip, compressed))
			diffIDs = append(diffIDs, diffID)
		}
		cfg, err := mem.AddJSON(v1.MediaTypeImageConfig, v1.Image{
			Created:  &created,
			Platform: p,
			Config:   v1.ImageConfig{Cmd: []string{"/bin/sh"}},
			RootFS:   v1.RootFS{Type: "layers", DiffIDs: diffIDs},
			History:  []v1.History{{Created: &created, CreatedBy: "ocipull demo: payload"}, {Created: &created, CreatedBy: "ocipull demo: platform note"}},
		})
		if err != nil {
			return nil, err
		}
		img, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: layers})
		if err != nil {
			return nil, err
		}
		d := img.Descriptor()
		pp := p
		d.Platform = &pp
		ms = append(ms, d)
	}
	return mem.NewIndex(v1.Index{Manifests: ms})
}

// tarGzip makes a gzip-compressed tar of files and returns it with the
// digest of the uncompressed tar (the layer's diff ID).
func tarGzip(files map[string][]byte, mtime time.Time) ([]byte, digest.Digest, error) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if dir := path.Dir(name); dir != "." {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: mtime}); err != nil {
				return nil, "", err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(files[name])), ModTime: mtime}); err != nil {
			return nil, "", err
		}
		if _, err := tw.Write(files[name]); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, "", err
	}
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), digest.FromBytes(tarBuf.Bytes()), nil
}
