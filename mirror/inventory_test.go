package mirror_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ocipull/registry/internal/testwait"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/mirror"
	"github.com/ocipull/registry/oci"
)

// TestInventoryPurgeAndGC, on a store a cache serves from: Inspect lists
// each tag with its size; Purge of one image removes its names, its
// manifest and what only it named, and keeps a layer another image
// shares; CollectGarbage removes an orphan blob and an abandoned landing
// past the grace period and keeps them within it; a landing in progress
// is never touched, and its pull completes; a purged tag is fetched again.
func TestInventoryPurgeAndGC(t *testing.T) {
	ctx := context.Background()
	up := newUpstream(t, 4096, 4096)
	shared, _ := up.img.ReadBlob(ctx, up.img.Layers()[0], 1<<20)
	mem := oci.NewMemory()
	own := make([]byte, 5000)
	rand.Read(own)
	cfg, _ := mem.AddJSON(v1.MediaTypeImageConfig, v1.Image{Platform: v1.Platform{OS: "linux", Architecture: "arm64"}, RootFS: v1.RootFS{Type: "layers"}})
	other, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: []v1.Descriptor{mem.Add(v1.MediaTypeImageLayer, shared), mem.Add(v1.MediaTypeImageLayer, own)}})
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, up.srv, "team/other", "v1", other)
	dir := t.TempDir()
	m, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	for _, repo := range []string{"team/app", "team/other"} {
		if _, err := mirrorPull(ctx, clientFor(t, ms, repo), "v1"); err != nil {
			t.Fatal(err)
		}
	}
	host := strings.TrimPrefix(up.ts.URL, "http://")
	appName, otherName := host+"/team/app:v1", host+"/team/other:v1"
	var inv mirror.Inventory
	testwait.Until(t, "both tags in the store's index", func() bool {
		inv, err = m.Inspect(ctx)
		return err == nil && len(inv.Images) == 2
	})
	if inv.Images[0].Name != appName || inv.Images[1].Name != otherName || inv.Images[0].Missing != 0 || inv.Images[0].Size < 8192 {
		t.Errorf("inventory: %+v", inv.Images)
	}

	// Purge one image: the shared layer stays for the other.
	r, err := m.Purge(ctx, appName)
	if err != nil || len(r.Names) != 1 || r.Blobs != 3 {
		t.Fatalf("purge: %+v, %v; want its name, manifest, config and own layer", r, err)
	}
	if _, err := os.Stat(blobPath(dir, up.img.Layers()[0].Digest)); err != nil {
		t.Error("the layer the other image shares was removed")
	}
	for _, d := range []digest.Digest{up.img.Digest(), up.img.Layers()[1].Digest} {
		if _, err := os.Stat(blobPath(dir, d)); err == nil {
			t.Errorf("%s survived the purge", d)
		}
	}
	if _, err := mirror.Purge(ctx, mirror.LayoutStore{}, "no-slash"); err == nil {
		t.Error("a purge reference without a repository was accepted")
	}

	// Garbage: an orphan blob and an abandoned landing, old and new.
	l, _ := oci.OpenLayout(dir)
	orphan := make([]byte, 3000)
	rand.Read(orphan)
	od := digest.FromBytes(orphan)
	if err := l.WriteBlob(ctx, nil, v1.Descriptor{MediaType: v1.MediaTypeImageLayer, Digest: od, Size: 3000, Data: orphan}, nil); err != nil {
		t.Fatal(err)
	}
	abandoned := blobPath(dir, digest.FromString("abandoned")) + ".partial"
	os.WriteFile(abandoned, []byte("half"), 0o644)
	if r, err := m.CollectGarbage(ctx, time.Now().Add(-time.Hour)); err != nil || r.Blobs != 0 {
		t.Errorf("gc within the grace period removed %+v, %v", r, err)
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(blobPath(dir, od), old, old)
	os.Chtimes(abandoned, old, old)

	// A pull in progress: its landing is held at a gate.
	big := newUpstream(t, 1<<20)
	gate := make(chan struct{})
	big.inj.Add(faults.Rule{Path: string(big.img.Layers()[0].Digest), Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		next.ServeHTTP(&gatedWriter{ResponseWriter: w, after: 100_000, gate: gate}, r)
	})})
	bm, bs := newMirror(t, dir, map[string]*upstreamFixture{"": big}, nil)
	pulled := make(chan error, 1)
	go func() { _, err := mirrorPull(ctx, clientFor(t, bs, "team/app"), "v1"); pulled <- err }()
	testwait.Until(t, "the landing", func() bool {
		st, err := os.Stat(blobPath(dir, big.img.Layers()[0].Digest) + ".partial")
		return err == nil && st.Size() > 0
	})
	partial := blobPath(dir, big.img.Layers()[0].Digest) + ".partial"
	os.Chtimes(partial, old, old) // even an old-looking landing, while held
	r, err = bm.CollectGarbage(ctx, time.Now().Add(-time.Hour))
	if err != nil || r.Blobs != 2 {
		t.Errorf("gc past the grace period: %+v, %v; want the orphan and the abandoned landing", r, err)
	}
	if _, err := os.Stat(partial); err != nil {
		t.Error("gc removed a landing in progress")
	}
	close(gate)
	if err := <-pulled; err != nil {
		t.Errorf("the pull in progress failed: %v", err)
	}

	// The purged tag is fetched again.
	if _, err := mirrorPull(ctx, clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Errorf("pull after purge: %v", err)
	}
}

// manifestReads is a store that records which content Manifest reads.
type manifestReads struct {
	mirror.LayoutStore
	read map[digest.Digest]int
}

func (s *manifestReads) Manifest(ctx context.Context, desc v1.Descriptor) ([]byte, error) {
	s.read[desc.Digest]++
	return s.LayoutStore.Manifest(ctx, desc)
}

// TestInventoryReadsNoLayer: listing a store that can peek (a layout)
// reads in whole only the content that starts as a JSON object — the
// manifest and the config — never a layer, and still finds the image
// whole.
func TestInventoryReadsNoLayer(t *testing.T) {
	ctx := context.Background()
	up := newUpstream(t, 4096, 300_000)
	dir := t.TempDir()
	_, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	if _, err := mirrorPull(ctx, clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	l, err := oci.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	store := &manifestReads{LayoutStore: mirror.LayoutStore{Layout: l}, read: map[digest.Digest]int{}}
	var inv mirror.Inventory
	testwait.Until(t, "the tag in the store's index", func() bool {
		inv, err = mirror.Inspect(ctx, store)
		return err == nil && len(inv.Images) == 1
	})
	if inv.Images[0].Missing != 0 || inv.Manifests != 1 || inv.Blobs != 3 {
		t.Errorf("inventory: %+v", inv)
	}
	for _, layer := range up.img.Layers() {
		if n := store.read[layer.Digest]; n != 0 {
			t.Errorf("layer %s read %d times to list the store", layer.Digest, n)
		}
	}
	if store.read[up.img.Descriptor().Digest] == 0 {
		t.Error("the manifest was not read")
	}
}
