package interop

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/rootfs"
)

// tarEntry is one entry of a test layer.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func layerOf(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return b.Bytes()
}

// realShapedLayers are layers as builders make them: deletions, an opaque
// directory, hardlinks across layers, absolute and relative symlinks, a
// file replaced by a directory and back, modes.
func realShapedLayers(t *testing.T) [][]byte {
	return [][]byte{
		layerOf(t,
			tarEntry{name: "etc/", typ: tar.TypeDir},
			tarEntry{name: "etc/os-release", body: "ID=test\n"},
			tarEntry{name: "etc/removed", body: "soon gone"},
			tarEntry{name: "usr/", typ: tar.TypeDir},
			tarEntry{name: "usr/bin/", typ: tar.TypeDir},
			tarEntry{name: "usr/bin/busybox", body: "#!busybox", mode: 0o755},
			tarEntry{name: "usr/bin/sh", typ: tar.TypeLink, link: "usr/bin/busybox"},
			tarEntry{name: "bin", typ: tar.TypeSymlink, link: "usr/bin"},
			tarEntry{name: "var/cache/", typ: tar.TypeDir},
			tarEntry{name: "var/cache/a", body: "a"},
			tarEntry{name: "var/cache/sub/b", body: "b"},
			tarEntry{name: "flip", body: "a file"},
			tarEntry{name: "flop/", typ: tar.TypeDir},
			tarEntry{name: "flop/x", body: "x"},
			tarEntry{name: "secret", body: "s", mode: 0o600},
		),
		layerOf(t,
			tarEntry{name: "etc/.wh.removed"},
			tarEntry{name: "var/cache/", typ: tar.TypeDir},
			tarEntry{name: "var/cache/.wh..wh..opq"},
			tarEntry{name: "var/cache/fresh", body: "fresh"},
			tarEntry{name: "usr/bin/ls", typ: tar.TypeLink, link: "usr/bin/busybox"},
			tarEntry{name: ".wh.flip"},
			tarEntry{name: "flip/", typ: tar.TypeDir},
			tarEntry{name: "flip/inside", body: "in"},
			tarEntry{name: ".wh.flop"},
			tarEntry{name: "flop", body: "now a file"},
			tarEntry{name: "lib", typ: tar.TypeSymlink, link: "/usr/lib"},
		),
		layerOf(t,
			tarEntry{name: "usr/bin/.wh.busybox"}, // sh and ls keep the content
			tarEntry{name: ".wh.flip"},
			tarEntry{name: "flip", body: "a file again"},
			tarEntry{name: "etc/os-release", body: "ID=test\nVERSION=2\n"},
		),
	}
}

// fsView is what two unpackers must agree on: type, permission bits, link
// target, content.
type fsView map[string]string

func viewOf(t *testing.T, dir string) fsView {
	t.Helper()
	out := fsView{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, _ := d.Info()
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "symlink " + target
		case d.IsDir():
			out[rel] = "dir " + info.Mode().Perm().String()
		default:
			b, _ := os.ReadFile(p)
			out[rel] = "file " + info.Mode().Perm().String() + " " + string(b)
		}
		return nil
	})
	return out
}

func tarView(t *testing.T, r io.Reader) fsView {
	t.Helper()
	out := fsView{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Clean(h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			out[name] = "dir " + os.FileMode(h.Mode).Perm().String()
		case tar.TypeSymlink:
			out[name] = "symlink " + h.Linkname
		case tar.TypeLink:
			out[name] = out[filepath.Clean(h.Linkname)]
		default:
			b, _ := io.ReadAll(tr)
			out[name] = "file " + os.FileMode(h.Mode).Perm().String() + " " + string(b)
		}
	}
}

func compareViews(t *testing.T, what string, got, want fsView) int {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	n := 0
	for _, k := range keys {
		if got[k] != want[k] {
			t.Logf("%s: %s: %q, containerd %q", what, k, got[k], want[k])
			n++
		}
	}
	return n
}

// TestUnpackAgreesWithContainerd: our Unpack and Flatten of real-shaped
// layers give exactly the tree containerd's layer applier
// (pkg/archive.Apply, what the runtimes use) makes of the same layers.
// crane export's (go-containerregistry mutate.Extract) differences are
// logged with the bug they are.
func TestUnpackAgreesWithContainerd(t *testing.T) {
	ctx := context.Background()
	layers := realShapedLayers(t)

	// containerd's applier, layer by layer.
	theirs := t.TempDir()
	var opts []archive.ApplyOpt
	if os.Geteuid() != 0 {
		opts = append(opts, archive.WithNoSameOwner())
	}
	for i, l := range layers {
		if _, err := archive.Apply(ctx, theirs, bytes.NewReader(l), opts...); err != nil {
			t.Fatalf("containerd Apply layer %d: %v", i, err)
		}
	}
	want := viewOf(t, theirs)

	// Ours.
	mem := oci.NewMemory()
	var descs []ocispec.Descriptor
	var ids []digest.Digest
	for _, l := range layers {
		descs = append(descs, mem.Add(ocispec.MediaTypeImageLayer, l))
		ids = append(ids, digest.FromBytes(l))
	}
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: ids}})
	img, err := mem.NewImage(ocispec.Manifest{Config: mem.Add(ocispec.MediaTypeImageConfig, cfg), Layers: descs})
	if err != nil {
		t.Fatal(err)
	}
	ours := filepath.Join(t.TempDir(), "rootfs")
	if err := rootfs.Unpack(ctx, img, ours, &rootfs.Options{Setuid: rootfs.Yes}); err != nil {
		t.Fatal(err)
	}
	if n := compareViews(t, "unpack", viewOf(t, ours), want); n != 0 {
		t.Errorf("our unpack differs from containerd's in %d paths", n)
	}
	var flat bytes.Buffer
	if err := rootfs.Flatten(ctx, img, &flat, nil); err != nil {
		t.Fatal(err)
	}
	if n := compareViews(t, "flatten", tarView(t, &flat), want); n != 0 {
		t.Errorf("our flatten differs from containerd's in %d paths", n)
	}

	// crane export, for the record.
	gimg := empty.Image
	for _, l := range layers {
		gimg, err = mutate.AppendLayers(gimg, static.NewLayer(l, types.OCIUncompressedLayer))
		if err != nil {
			t.Fatal(err)
		}
	}
	rc := mutate.Extract(gimg)
	crane := tarView(t, rc)
	rc.Close()
	if n := compareViews(t, "crane export", crane, want); n != 0 {
		t.Logf("crane export differs from containerd's in %d paths: it lets a whiteout hide what the same layer adds (flip, flop; the spec says whiteouts apply to lower layers), drops hardlinks whose target a later layer removed (usr/bin/sh, usr/bin/ls; go-containerregistry #2002), and emits no implicit parent directories (var)", n)
	}
}
