package rootfs_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ocipull/registry/rootfs"
)

// node is what a test expects at a path: "d" a directory, "f:<content>",
// "l:<target>" a symlink.
type tree map[string]string

// readDir describes the tree under dir (hardlinks show as files).
func readDir(t *testing.T, dir string) tree {
	t.Helper()
	out := tree{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "l:" + target
		case d.IsDir():
			out[rel] = "d"
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			out[rel] = "f:" + string(b)
		default:
			out[rel] = "other"
		}
		return nil
	})
	return out
}

// readTar describes a flattened stream, checking that every hardlink
// points at an entry already in it and no path repeats.
func readTar(t *testing.T, b []byte) (tree, map[string]*tar.Header) {
	t.Helper()
	out, headers := tree{}, map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, headers
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if _, dup := out[name]; dup {
			t.Fatalf("%s twice in the flattened stream", name)
		}
		headers[name] = h
		switch h.Typeflag {
		case tar.TypeDir:
			out[name] = "d"
		case tar.TypeReg:
			c, _ := io.ReadAll(tr)
			out[name] = "f:" + string(c)
		case tar.TypeSymlink:
			out[name] = "l:" + h.Linkname
		case tar.TypeLink:
			target, ok := out[h.Linkname]
			if !ok {
				t.Fatalf("%s links to %s, not (yet) in the stream", name, h.Linkname)
			}
			out[name] = target
		default:
			out[name] = "other"
		}
	}
}

func diff(t *testing.T, what string, got, want tree) {
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
	for _, k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s: %s: got %q, want %q", what, k, got[k], want[k])
		}
	}
}

// TestLayersApplied: deletions, opaque directories, hardlinks across
// layers, absolute and relative symlinks, a file replaced by a directory
// and back, duplicates (last wins): Unpack and Flatten give the same,
// expected tree.
func TestLayersApplied(t *testing.T) {
	img := image(t,
		layerTar(t,
			entry{name: "etc/", typ: tar.TypeDir},
			entry{name: "etc/passwd", body: "root"},
			entry{name: "etc/gone", body: "x"},
			entry{name: "opq/", typ: tar.TypeDir},
			entry{name: "opq/old", body: "old"},
			entry{name: "opq/sub/deep", body: "deep"},
			entry{name: "a", body: "file a"},
			entry{name: "dir2file/", typ: tar.TypeDir},
			entry{name: "dir2file/x", body: "x"},
			entry{name: "usr/bin/tool", body: "tool"},
			entry{name: "dup", body: "first"},
			entry{name: "dup", body: "second"},
		),
		layerTar(t,
			entry{name: "etc/.wh.gone"},
			entry{name: "opq/", typ: tar.TypeDir},
			entry{name: "opq/.wh..wh..opq"},
			entry{name: "opq/new", body: "new"},
			entry{name: "a/", typ: tar.TypeDir}, // the file a becomes a directory
			entry{name: "a/inner", body: "inner"},
			entry{name: ".wh.dir2file"},
			entry{name: "dir2file", body: "now a file"},
			entry{name: "bin", typ: tar.TypeSymlink, link: "usr/bin"},
			entry{name: "abs", typ: tar.TypeSymlink, link: "/etc/passwd"},
			entry{name: "usr/bin/hard", typ: tar.TypeLink, link: "usr/bin/tool"},
		),
		layerTar(t,
			entry{name: ".wh.a"},
			entry{name: "a", body: "a file again"},
			entry{name: "usr/bin/.wh.tool"}, // the link keeps the content
		),
	)
	want := tree{
		"etc": "d", "etc/passwd": "f:root", "opq": "d", "opq/new": "f:new", "a": "f:a file again",
		"dir2file": "f:now a file", "usr": "d", "usr/bin": "d", "usr/bin/hard": "f:tool",
		"bin": "l:usr/bin", "abs": "l:/etc/passwd", "dup": "f:second",
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := rootfs.Unpack(ctx, img, dir, nil); err != nil {
		t.Fatal(err)
	}
	diff(t, "unpack", readDir(t, dir), want)
	var b bytes.Buffer
	if err := rootfs.Flatten(ctx, img, &b, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := readTar(t, b.Bytes())
	diff(t, "flatten", got, want)
}

// TestHardlinksResolved: links in the output point at content present in
// it, each after its target, whatever order the layers gave.
func TestHardlinksResolved(t *testing.T) {
	img := image(t,
		layerTar(t, entry{name: "z/target", body: "shared"}),
		layerTar(t, entry{name: "a/link", typ: tar.TypeLink, link: "z/target"}, entry{name: "m/link2", typ: tar.TypeLink, link: "z/target"}),
		layerTar(t, entry{name: "z/target", body: "replaced"}),
	)
	var b bytes.Buffer
	if err := rootfs.Flatten(context.Background(), img, &b, nil); err != nil {
		t.Fatal(err)
	}
	got, headers := readTar(t, b.Bytes())
	diff(t, "flatten", got, tree{"a": "d", "a/link": "f:shared", "m": "d", "m/link2": "f:shared", "z": "d", "z/target": "f:replaced"})
	if h := headers["m/link2"]; h.Typeflag != tar.TypeLink || h.Linkname != "a/link" {
		t.Errorf("m/link2: type %c → %q, want a link to a/link", h.Typeflag, h.Linkname)
	}
}

// TestMetadataCarried: modes, numeric ownership, times and extended
// attributes reach the flattened stream; Unpack sets modes and times,
// and clears setuid unless asked.
func TestMetadataCarried(t *testing.T) {
	img := image(t, layerTar(t,
		entry{name: "bin/su", body: "su", mode: 0o4755, uid: 0, gid: 0},
		entry{name: "home/u/f", body: "f", mode: 0o600, uid: 1000, gid: 1000, pax: map[string]string{"SCHILY.xattr.user.k": "v"}},
		entry{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1},
	))
	var b bytes.Buffer
	if err := rootfs.Flatten(context.Background(), img, &b, nil); err != nil {
		t.Fatal(err)
	}
	_, headers := readTar(t, b.Bytes())
	if h := headers["bin/su"]; h.Mode&0o7777 != 0o4755 {
		t.Errorf("bin/su mode %o", h.Mode)
	}
	if h := headers["home/u/f"]; h.Uid != 1000 || h.Gid != 1000 || h.PAXRecords["SCHILY.xattr.user.k"] != "v" || !h.ModTime.Equal(epoch) {
		t.Errorf("home/u/f: %+v", h)
	}
	if h := headers["dev/null"]; h == nil || h.Typeflag != tar.TypeChar || h.Devmajor != 1 {
		t.Errorf("dev/null: %+v", h)
	}
	dir := filepath.Join(t.TempDir(), "r")
	var notes []string
	if err := rootfs.Unpack(context.Background(), img, dir, &rootfs.Options{Note: func(p, what string) { notes = append(notes, p+": "+what) }}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "bin/su"))
	if err != nil || st.Mode()&os.ModeSetuid != 0 || st.Mode().Perm() != 0o755 || !st.ModTime().Equal(epoch) {
		t.Errorf("unpacked bin/su: %v %v", st.Mode(), err)
	}
	if os.Geteuid() != 0 {
		if _, err := os.Lstat(filepath.Join(dir, "dev/null")); err == nil {
			t.Error("a device node was made without Options.Devices")
		}
	}
	joined := strings.Join(notes, "\n")
	for _, want := range []string{"bin/su: setuid", "dev/null: not created", "home/u/f: extended attributes"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no note %q in:\n%s", want, joined)
		}
	}
}
