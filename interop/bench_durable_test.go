package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	ctrcontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	ggcrlayout "github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
	"oras.land/oras-go/v2"
	orasoci "oras.land/oras-go/v2/content/oci"
	orasremote "oras.land/oras-go/v2/registry/remote"
)

// BenchmarkDurablePull times every client to the same end state: the
// image's bytes durable on disk. Each pull is followed by a syncfs(2) of
// the filesystem it wrote to (timed; ocipull makes its blobs durable
// itself, so its sync finds little left), after a sync that is not timed
// so that no pull pays for the one before. In interleaved rounds (the
// order rotates each round): the durable limit (one GET, SHA-256,
// write(2) to a new file, fdatasync), `ocipull pull` (the binary),
// crane's way (go-containerregistry's layout.Write), oras-go's oras.Copy
// into its OCI store, and containerd's content store (which fsyncs each
// blob as it commits it). Metrics: the median seconds of each, and each
// peer's median over ocipull's (above 1: ocipull is faster).
//
// OCIPULL_BENCH_BLOB_MIB sets the layer's size (default 1024).
func BenchmarkDurablePull(b *testing.B) {
	size := benchBlobMiB() << 20
	f := newImageFixture(b, size)
	layer := f.layers[0]
	bin := filepath.Join(b.TempDir(), "ocipull")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ocipull/registry/cmd/ocipull").CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	ctx := context.Background()
	base := b.TempDir()
	type client struct {
		name string
		pull func(dir string) error
	}
	clients := []client{
		{"limit", func(dir string) error {
			return durableLimit(f.ts.URL+"/v2/bench/img/blobs/"+string(layer.Digest), layer.Digest, dir)
		}},
		{"ocipull", func(dir string) error {
			cmd := exec.Command(bin, "pull", "--quiet", f.host+"/bench/img:v1", dir)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%v: %s", err, out.String())
			}
			return nil
		}},
		{"crane", func(dir string) error {
			ref, _ := name.ParseReference(f.host+"/bench/img:v1", name.Insecure)
			img, err := remote.Image(ref)
			if err != nil {
				return err
			}
			p, err := ggcrlayout.Write(dir, empty.Index)
			if err != nil {
				return err
			}
			return p.AppendImage(img)
		}},
		{"oras", func(dir string) error {
			repo, _ := orasremote.NewRepository(f.host + "/bench/img")
			repo.PlainHTTP = true
			store, err := orasoci.New(dir)
			if err != nil {
				return err
			}
			_, err = oras.Copy(ctx, repo, "v1", store, "v1", oras.DefaultCopyOptions)
			return err
		}},
		{"containerd-content", func(dir string) error { return containerdContentPull(ctx, f.host, dir, f.img.Descriptor()) }},
	}
	times := make([][]time.Duration, len(clients))
	b.ResetTimer()
	for round := 0; round < b.N; round++ {
		for k := range clients {
			j := (k + round) % len(clients)
			dir := filepath.Join(base, fmt.Sprintf("%s-%d", clients[j].name, round))
			b.StopTimer()
			syscall.Sync()
			b.StartTimer()
			start := time.Now()
			if err := clients[j].pull(dir); err != nil {
				b.Fatalf("%s: %v", clients[j].name, err)
			}
			if err := syncfs(dir); err != nil {
				b.Fatal(err)
			}
			times[j] = append(times[j], time.Since(start))
			b.StopTimer()
			os.RemoveAll(dir)
			b.StartTimer()
		}
	}
	b.StopTimer()
	med := map[string]float64{}
	for j, c := range clients {
		med[c.name] = median(times[j]) / 1000
		b.ReportMetric(med[c.name], c.name+"-s")
	}
	for _, c := range clients {
		if c.name != "ocipull" {
			b.ReportMetric(med[c.name]/med["ocipull"], c.name+"/ocipull")
		}
	}
}

// durableLimit is the least any client can do: one GET, hashed as it is
// written to a new file (1 MiB buffers), then fdatasync.
func durableLimit(url string, want digest.Digest, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := os.Create(filepath.Join(dir, "blob"))
	if err != nil {
		return err
	}
	defer out.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(io.MultiWriter(h, out), struct{ io.Reader }{resp.Body}, make([]byte, 1<<20)); err != nil {
		return err
	}
	if digest.NewDigest(digest.SHA256, h) != want {
		return fmt.Errorf("digest mismatch")
	}
	return syscall.Fdatasync(int(out.Fd()))
}

// containerdContentPull fetches the manifest, config and layers into
// containerd's local content store, as `ctr content fetch` does (each
// blob verified and fsynced as it is committed).
func containerdContentPull(ctx context.Context, host, dir string, top ocispec.Descriptor) error {
	store, err := local.NewStore(dir)
	if err != nil {
		return err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	defer t.CloseIdleConnections()
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(func(string) (bool, error) { return true, nil }),
			docker.WithClient(&http.Client{Transport: t})),
	})
	fetcher, err := resolver.Fetcher(ctx, host+"/bench/img:v1")
	if err != nil {
		return err
	}
	fetch := func(d ocispec.Descriptor) ([]byte, error) {
		rc, err := fetcher.Fetch(ctx, d)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		if err := ctrcontent.WriteBlob(ctx, store, d.Digest.String(), rc, d); err != nil {
			return nil, err
		}
		if d.Size > 1<<20 {
			return nil, nil
		}
		return ctrcontent.ReadBlob(ctx, store, d)
	}
	raw, err := fetch(top)
	if err != nil {
		return err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		if _, err := fetch(d); err != nil {
			return err
		}
	}
	return nil
}

// syncfs flushes the filesystem holding dir.
func syncfs(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}
