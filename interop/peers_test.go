package interop

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/bcrypt"
)

// referenceRegistry starts distribution/distribution v3 in-process with its
// in-memory storage, optionally behind htpasswd Basic auth.
func referenceRegistry(t testing.TB, user, pass string) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(referenceApp(t, user, pass))
	t.Cleanup(ts.Close)
	return ts
}

// referenceApp is the reference registry's handler, to serve as one wants.
func referenceApp(t testing.TB, user, pass string) http.Handler {
	t.Helper()
	cfg := &configuration.Configuration{}
	cfg.Storage = configuration.Storage{"inmemory": configuration.Parameters{}, "delete": configuration.Parameters{"enabled": true}}
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true
	cfg.Catalog.MaxEntries = 1000
	if user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "htpasswd")
		if err := os.WriteFile(path, []byte(fmt.Sprintf("%s:%s\n", user, hash)), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "interop", "path": path}}
	}
	return handlers.NewApp(context.Background(), cfg)
}

// content is what the peers push and pull.
type content struct {
	images    map[string]ggcrv1.Image      // tag -> image
	indexes   map[string]ggcrv1.ImageIndex // tag -> index
	artifact  ggcrv1.Image                 // refers to images["oci"]
	platforms []ggcrv1.Platform
}

func makeContent(t testing.TB, large bool) *content {
	t.Helper()
	c := &content{images: map[string]ggcrv1.Image{}, indexes: map[string]ggcrv1.ImageIndex{}}
	docker, err := random.Image(300_000, 3) // Docker schema-2 media types
	if err != nil {
		t.Fatal(err)
	}
	c.images["docker"] = docker
	oci := mutate.MediaType(mutate.ConfigMediaType(docker, types.OCIConfigJSON), types.OCIManifestSchema1)
	c.images["oci"] = oci
	if large {
		big, err := random.Image(64<<20, 1)
		if err != nil {
			t.Fatal(err)
		}
		c.images["large"] = big
	}
	c.platforms = []ggcrv1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}, {OS: "linux", Architecture: "arm", Variant: "v7"}}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, p := range c.platforms {
		img, err := random.Image(int64(10_000*(i+1)), 2)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.MediaType(mutate.ConfigMediaType(img, types.OCIConfigJSON), types.OCIManifestSchema1)
		pp := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: ggcrv1.Descriptor{Platform: &pp}})
	}
	c.indexes["multi"] = idx
	subj, err := partial(oci)
	if err != nil {
		t.Fatal(err)
	}
	art := mutate.MediaType(mutate.ConfigMediaType(empty.Image, "application/vnd.example.sbom"), types.OCIManifestSchema1)
	art, err = mutate.Append(art, mutate.Addendum{Layer: staticLayer(t, "sbom contents"), MediaType: "application/vnd.example.sbom.layer"})
	if err != nil {
		t.Fatal(err)
	}
	c.artifact = mutate.Subject(art, subj).(ggcrv1.Image)
	return c
}

func partial(img ggcrv1.Image) (ggcrv1.Descriptor, error) {
	d, err := img.Digest()
	if err != nil {
		return ggcrv1.Descriptor{}, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return ggcrv1.Descriptor{}, err
	}
	sz, err := img.Size()
	return ggcrv1.Descriptor{Digest: d, MediaType: mt, Size: sz}, err
}

// push writes c into repo on host with go-containerregistry.
func push(t testing.TB, host, repo string, c *content, auth authn.Authenticator) {
	t.Helper()
	opts := []remote.Option{remote.WithAuth(auth)}
	for tag, img := range c.images {
		ref, err := name.ParseReference(host+"/"+repo+":"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img, opts...); err != nil {
			t.Fatalf("ggcr push %s: %v", ref, err)
		}
	}
	for tag, idx := range c.indexes {
		ref, _ := name.ParseReference(host+"/"+repo+":"+tag, name.Insecure)
		if err := remote.WriteIndex(ref, idx, opts...); err != nil {
			t.Fatalf("ggcr push index %s: %v", ref, err)
		}
	}
	d, err := c.artifact.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host+"/"+repo+"@"+d.String(), name.Insecure)
	if err := remote.Write(ref, c.artifact, opts...); err != nil {
		t.Fatalf("ggcr push artifact: %v", err)
	}
}

func readAllClose(rc io.ReadCloser) ([]byte, error) {
	defer rc.Close()
	return io.ReadAll(rc)
}

func staticLayer(t testing.TB, s string) ggcrv1.Layer {
	t.Helper()
	return static.NewLayer([]byte(s), "application/vnd.example.sbom.layer")
}
