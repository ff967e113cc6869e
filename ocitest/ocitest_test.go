package ocitest_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

func TestBuildIsDeterministic(t *testing.T) {
	spec := ocitest.Spec{Seed: 7, Layers: 2, Platforms: ocitest.Platforms("linux/amd64", "linux/arm64/v8")}
	a, err := ocitest.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ocitest.Build(spec)
	if a.Digest() != b.Digest() {
		t.Errorf("same spec, digests %s and %s", a.Digest(), b.Digest())
	}
	spec.Seed = 8
	c, _ := ocitest.Build(spec)
	if c.Digest() == a.Digest() {
		t.Error("another seed built the same content")
	}
}

// The layers are real tar+gzip (or tar) archives whose diff_ids are in
// the config, with a history entry each.
func TestBuildLayersAreReal(t *testing.T) {
	ctx := context.Background()
	for _, spec := range []ocitest.Spec{
		{Seed: 1, Layers: 3, LayerSize: 5000},
		{Seed: 2, Layers: 2, Uncompressed: true},
		{Seed: 3, Docker: true},
		{Seed: 4, LayerSize: ocitest.StreamAbove + 1}, // streamed, never held
	} {
		t.Run(fmt.Sprintf("%+v", spec), func(t *testing.T) {
			ref, err := ocitest.Build(spec)
			if err != nil {
				t.Fatal(err)
			}
			img := ref.(*oci.Image)
			cfg, err := img.ReadConfig(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OS != "linux" || cfg.Architecture != "amd64" || len(cfg.History) != len(img.Layers()) {
				t.Errorf("config: %s/%s, %d history entries for %d layers", cfg.OS, cfg.Architecture, len(cfg.History), len(img.Layers()))
			}
			wantType := v1.MediaTypeImageManifest
			if spec.Docker {
				wantType = oci.MediaTypeDockerManifest
			}
			if mt := img.Descriptor().MediaType; mt != wantType {
				t.Errorf("media type %s, want %s", mt, wantType)
			}
			for i, l := range img.Layers() {
				rc, err := img.OpenBlob(ctx, l)
				if err != nil {
					t.Fatal(err)
				}
				var r io.Reader = rc
				if !spec.Uncompressed {
					zr, err := gzip.NewReader(rc)
					if err != nil {
						t.Fatal(err)
					}
					r = zr
				}
				h := sha256.New()
				tr := tar.NewReader(io.TeeReader(r, h))
				hdr, err := tr.Next()
				if err != nil {
					t.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, tr)
				io.Copy(io.Discard, io.TeeReader(r, h))
				rc.Close()
				want := max(spec.LayerSize, 1024)
				if n != want || hdr.Size != want {
					t.Errorf("layer %d: a file of %d bytes, want %d", i, n, want)
				}
				if got := digest.NewDigest(digest.SHA256, h); got != cfg.RootFS.DiffIDs[i] {
					t.Errorf("layer %d: diff_id %s, config says %s", i, got, cfg.RootFS.DiffIDs[i])
				}
			}
		})
	}
}

func TestBuildIndex(t *testing.T) {
	ref, err := ocitest.Build(ocitest.Spec{Platforms: ocitest.Platforms("linux/amd64", "linux/arm64/v8", "linux/arm/v7"), Docker: true})
	if err != nil {
		t.Fatal(err)
	}
	idx := ref.(*oci.Index)
	if mt := idx.Descriptor().MediaType; mt != oci.MediaTypeDockerManifestList {
		t.Errorf("media type %s", mt)
	}
	if len(idx.Manifests()) != 3 {
		t.Fatalf("%d children", len(idx.Manifests()))
	}
	img, err := oci.ImageForPlatform(context.Background(), idx, ocitest.Platforms("linux/arm/v7")[0])
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ReadConfig(context.Background())
	if err != nil || cfg.Architecture != "arm" || cfg.Variant != "v7" {
		t.Errorf("child config: %v %+v", err, cfg.Platform)
	}
}

// Content with a missing blob fails when added, naming it; AllowDangling
// lets a test serve it as BLOB_UNKNOWN.
func TestEarlyErrors(t *testing.T) {
	mem := oci.NewMemory()
	cfg := mem.Add(v1.MediaTypeImageConfig, []byte(`{}`))
	missing := v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: digest.FromString("never added"), Size: 11}
	if _, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: []v1.Descriptor{missing}}); !errors.Is(err, oci.ErrNotFound) {
		t.Fatalf("NewImage with a missing layer: %v", err)
	}
	mem.AllowDangling = true
	img, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: []v1.Descriptor{missing}})
	if err != nil {
		t.Fatal(err)
	}
	srv := registry.NewServer()
	if err := srv.AddRef("a/b", "v1", img); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("AddRef of a dangling ref: %v", err)
	}
	srv.AllowDangling = true
	if err := srv.AddRef("a/b", "v1", img); err != nil {
		t.Fatal(err)
	}
}

// The recorder sees what a client did; tags move and disappear and
// content goes while the server serves.
func TestRecorderAndMutations(t *testing.T) {
	ctx := context.Background()
	v1ref, _ := ocitest.Build(ocitest.Spec{Seed: 1})
	v2ref, _ := ocitest.Build(ocitest.Spec{Seed: 2})
	auth := &registry.ServerAuth{Users: map[string]registry.ServerUser{"alice": {Password: "pw", Repositories: []string{"*"}}}}
	reg := ocitest.NewRegistry(t, auth, map[string]oci.Ref{"app:v1": v1ref, "app:v2": v2ref})
	c := reg.Client("app", "alice", "pw")
	if _, err := c.Read(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	reqs := reg.Requests()
	last := reqs[len(reqs)-1]
	if last.Path != "/v2/app/manifests/v1" || last.Status != http.StatusOK || last.User != "alice" || last.Header.Get("Authorization") != "Bearer" {
		t.Errorf("last request: %+v", last)
	}
	if n := reg.Count("GET", "/token"); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
	if err := reg.Server.Tag("app", "v1", v2ref.Digest()); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Read(ctx, "v1"); err != nil || got.Digest() != v2ref.Digest() {
		t.Errorf("moved tag: %v", err)
	}
	if err := reg.Server.Untag("app", "v2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, "v2"); !errors.Is(err, registry.ErrManifestUnknown) {
		t.Errorf("untagged: %v", err)
	}
	if err := reg.Server.Remove("app", v1ref.Digest()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, string(v1ref.Digest())); !errors.Is(err, registry.ErrManifestUnknown) {
		t.Errorf("removed manifest: %v", err)
	}
	layer := v1ref.(*oci.Image).Layers()[0]
	if _, err := c.OpenBlob(ctx, layer); !errors.Is(err, registry.ErrBlobUnknown) {
		t.Errorf("blob of the removed manifest: %v", err)
	}
	if _, err := c.OpenBlob(ctx, v2ref.(*oci.Image).Layers()[0]); err != nil {
		t.Errorf("blob still named: %v", err)
	}
}

func TestArtifactIsAReferrer(t *testing.T) {
	img, _ := ocitest.Build(ocitest.Spec{})
	sbom, err := ocitest.Artifact(img, "application/vnd.example.sbom", []byte(`{"packages":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	reg := ocitest.NewRegistry(t, nil, map[string]oci.Ref{"app:v1": img, "app": sbom})
	refs, err := reg.Client("app").Referrers(context.Background(), img.Digest(), "application/vnd.example.sbom")
	if err != nil || len(refs) != 1 || refs[0].Digest != sbom.Digest() {
		t.Errorf("referrers: %v %v", refs, err)
	}
}

// Client with one credential argument is a mistake, said at once, never a
// silently anonymous client (newcomer item 7).
func TestClientWantsUserAndPassword(t *testing.T) {
	reg := ocitest.NewRegistry(t, nil, nil)
	defer func() {
		if recover() == nil {
			t.Error("Client(repo, user) without a password did not panic")
		}
	}()
	reg.Client("app", "alice")
}
