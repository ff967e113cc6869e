package interop

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocipull/registry/mirror"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// TestContainerdThroughMirror: containerd's registry client, with the
// mirror configured as a host for the upstream in a hosts.toml (as
// containerd's hosts mechanism does it), resolves and fetches through the
// mirror, which sees ns=<upstream> on every request; digests unchanged.
func TestContainerdThroughMirror(t *testing.T) {
	up, _, layer := upstreamForProxies(t, 1<<20)
	upHost := hostOf(t, up)
	var mu sync.Mutex
	var lines []string
	logged := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		lines = append(lines, string(p))
		mu.Unlock()
		return len(p), nil
	}), nil))
	m, err := mirror.Open(t.TempDir(), mirror.Config{Upstreams: map[string]mirror.Upstream{upHost: {URL: up.URL}}, Log: logged})
	if err != nil {
		t.Fatal(err)
	}
	ms := httptest.NewServer(m)
	defer ms.Close()
	defer m.Close()

	root := t.TempDir()
	hostsToml := "server = \"" + up.URL + "\"\n\n[host.\"" + ms.URL + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	if err := os.MkdirAll(filepath.Join(root, upHost), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, upHost, "hosts.toml"), []byte(hostsToml), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: config.ConfigureHosts(ctx, config.HostOptions{HostDir: config.HostDirFromRoot(root)}),
	})
	name, desc, err := resolver.Resolve(ctx, upHost+"/proxy/img:v1")
	if err != nil {
		t.Fatal(err)
	}
	fetcher, err := resolver.Fetcher(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := fetcher.Fetch(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(rc)
	rc.Close()
	if digest.FromBytes(raw) != desc.Digest {
		t.Fatalf("manifest digest %s, want %s", digest.FromBytes(raw), desc.Digest)
	}
	ref, err := oci.NewRef(nil, raw, desc.MediaType, desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ref.(*oci.Image).Blobs() {
		rc, err := fetcher.Fetch(ctx, ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size})
		if err != nil {
			t.Fatal(err)
		}
		h := digest.SHA256.Digester()
		io.Copy(h.Hash(), rc)
		rc.Close()
		if h.Digest() != d.Digest {
			t.Errorf("blob %s fetched as %s", d.Digest, h.Digest())
		}
	}
	// The mirror logs a request once its handler returns, which may be
	// just after the client has read the last byte.
	sawLayer := false
	for deadline := time.Now().Add(30 * time.Second); !sawLayer && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		for _, l := range lines {
			sawLayer = sawLayer || strings.Contains(l, string(layer.Digest))
		}
		mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range lines {
		if strings.Contains(l, "msg=request") && !strings.Contains(l, "ns="+url.QueryEscape(upHost)) {
			t.Errorf("a request without ns=%s: %s", upHost, l)
		}
	}
	if !sawLayer {
		t.Errorf("the layer was not fetched through the mirror: %q", lines)
	}
}

// writerFunc is an io.Writer made of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
