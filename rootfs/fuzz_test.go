package rootfs_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ocipull/registry/rootfs"
)

// FuzzLayers feeds arbitrary bytes as a second layer over a fixed first
// one (so whiteouts and links have something to act on) to Unpack and
// Flatten: no panic, no hang, and nothing outside the target ever
// appears. Seeded with the table cases.
func FuzzLayers(f *testing.F) {
	for _, es := range [][]entry{
		{{name: "../x", body: "x"}},
		{{name: "link", typ: tar.TypeSymlink, link: "/tmp"}, {name: "link/f", body: "x"}},
		{{name: ".wh."}},
		{{name: "d/.wh..wh..opq"}, {name: "d/n", body: "n"}},
		{{name: "h", typ: tar.TypeLink, link: "base/f"}},
		{{name: "base/.wh.f"}, {name: "base", typ: tar.TypeSymlink, link: ".."}},
	} {
		f.Add(layerTar(f, es...))
	}
	first := layerTar(f, entry{name: "base/", typ: tar.TypeDir}, entry{name: "base/f", body: "f"}, entry{name: "d/old", body: "o"})
	f.Fuzz(func(t *testing.T, layer []byte) {
		base := t.TempDir()
		target := filepath.Join(base, "target")
		img := image(t, first, layer)
		opts := &rootfs.Options{MaxEntries: 1000}
		rootfs.Unpack(context.Background(), img, target, opts)
		rootfs.Flatten(context.Background(), img, &bytes.Buffer{}, opts)
		ents, _ := os.ReadDir(base)
		for _, e := range ents {
			if e.Name() != "target" {
				t.Fatalf("%s appeared outside the target", e.Name())
			}
		}
	})
}
