package rootfs_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ocipull/registry/rootfs"
)

// Hostile layers, each contained or refused. Safe to test as root: every
// hostile name is built so that any reading of it (joined to the target,
// taken as absolute, resolved against the working directory, which is
// inside the test's directory) stays inside the test's temporary
// directory, and the unpacker is never handed a whiteout of "/" or an
// absolute path outside it other than through its os.Root. After each
// case, the temporary directory outside the target must hold only what
// the test made.
func TestHostileLayers(t *testing.T) {
	base := t.TempDir()
	t.Chdir(base)
	outside := filepath.Join(base, "outside") // the victim of any escape
	for _, tc := range []struct {
		name    string
		layers  func() [][]byte
		wantErr error           // nil: contained (no error)
		check   func(tree) bool // for contained results, on the unpacked tree
	}{
		{"../ names", func() [][]byte {
			return [][]byte{layerTar(t, entry{name: "../outside/escaped", body: "x"})}
		}, rootfs.ErrUnsafeEntry, nil},
		{"a/../../ names", func() [][]byte {
			return [][]byte{layerTar(t, entry{name: "a/../../outside/escaped", body: "x"})}
		}, rootfs.ErrUnsafeEntry, nil},
		{"absolute names stay inside", func() [][]byte {
			return [][]byte{layerTar(t, entry{name: outside + "/abs", body: "x"})}
		}, nil, func(got tree) bool { return got[strings.TrimPrefix(outside, "/")+"/abs"] == "f:x" }},
		{"symlink to a directory outside, then a file through it", func() [][]byte {
			return [][]byte{layerTar(t, entry{name: "link", typ: tar.TypeSymlink, link: outside}, entry{name: "link/passwd", body: "x"})}
		}, rootfs.ErrUnsafeEntry, nil},
		{"symlink climbing out, then a file through it (next layer)", func() [][]byte {
			return [][]byte{
				layerTar(t, entry{name: "up", typ: tar.TypeSymlink, link: "../../../../../../../.." + outside}),
				layerTar(t, entry{name: "up/x", body: "x"}),
			}
		}, rootfs.ErrUnsafeEntry, nil},
		{"hardlink to a path outside", func() [][]byte {
			return [][]byte{layerTar(t, entry{name: "h", typ: tar.TypeLink, link: "../outside/secret"})}
		}, rootfs.ErrUnsafeEntry, nil},
		{"hardlink to an absent path", func() [][]byte {
			return [][]byte{layerTar(t, entry{name: "h", typ: tar.TypeLink, link: "nothere"})}
		}, rootfs.ErrUnsafeEntry, nil},
		{"hardlink to a path a later layer removes keeps the content", func() [][]byte {
			return [][]byte{
				layerTar(t, entry{name: "f", body: "kept"}, entry{name: "h", typ: tar.TypeLink, link: "f"}),
				layerTar(t, entry{name: ".wh.f"}),
			}
		}, nil, func(got tree) bool { return got["h"] == "f:kept" && got["f"] == "" }},
		{"whiteout of the root (bare .wh.)", func() [][]byte {
			return [][]byte{layerTar(t, entry{name: "keep", body: "x"}), layerTar(t, entry{name: ".wh."})}
		}, rootfs.ErrUnsafeEntry, nil},
		{"whiteout of .", func() [][]byte { return [][]byte{layerTar(t, entry{name: "d/.wh.."})} }, rootfs.ErrUnsafeEntry, nil},
		{"whiteout of ..", func() [][]byte { return [][]byte{layerTar(t, entry{name: "d/.wh..."})} }, rootfs.ErrUnsafeEntry, nil},
		{"device node as non-root is skipped", func() [][]byte {
			return [][]byte{layerTar(t, entry{name: "dev/sda", typ: tar.TypeBlock, major: 8})}
		}, nil, func(got tree) bool { return os.Geteuid() == 0 || got["dev/sda"] == "" }},
		{"header size larger than the data", func() [][]byte {
			full := layerTar(t, entry{name: "big", body: strings.Repeat("x", 4096)})
			return [][]byte{full[:512+1000]}
		}, io.ErrUnexpectedEOF, nil},
		{"too many entries", func() [][]byte {
			var es []entry
			for i := 0; i < 150; i++ {
				es = append(es, entry{name: "f" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + "/" + string(rune('a'+i/26)), body: "."})
			}
			return [][]byte{layerTar(t, es...)}
		}, rootfs.ErrTooManyEntries, nil},
		{"a very deep path", func() [][]byte {
			return [][]byte{layerTar(t, entry{name: strings.Repeat("d/", 300) + "f", body: "x"})}
		}, rootfs.ErrUnsafeEntry, nil},
		{"duplicate entries: the last wins", func() [][]byte {
			return [][]byte{layerTar(t, entry{name: "f", body: "1"}, entry{name: "f", typ: tar.TypeSymlink, link: "x"}, entry{name: "f", body: "3"})}
		}, nil, func(got tree) bool { return got["f"] == "f:3" }},
		{"non-UTF-8 names are kept as bytes", func() [][]byte {
			return [][]byte{layerTar(t, entry{name: "caf\xe9", body: "x"})}
		}, nil, func(got tree) bool { return got["caf\xe9"] == "f:x" }},
		{"an oversized PAX record", func() [][]byte {
			return [][]byte{paxBomb(t)}
		}, tar.ErrFieldTooLong, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(base, "target")
			os.RemoveAll(target)
			os.RemoveAll(outside)
			if err := os.MkdirAll(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600)
			img := image(t, tc.layers()...)
			err := rootfs.Unpack(context.Background(), img, target, &rootfs.Options{MaxEntries: 100})
			var flat bytes.Buffer
			ferr := rootfs.Flatten(context.Background(), img, &flat, &rootfs.Options{MaxEntries: 100})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("unpack: got %v, want %v", err, tc.wantErr)
				}
				if ferr == nil {
					t.Errorf("flatten: no error, want %v", tc.wantErr)
				}
			} else {
				if err != nil || ferr != nil {
					t.Fatalf("unpack: %v, flatten: %v", err, ferr)
				}
				if got := readDir(t, target); !tc.check(got) {
					t.Errorf("unexpected tree: %v", got)
				}
			}
			// Nothing outside the target changed.
			ents, _ := os.ReadDir(outside)
			if len(ents) != 1 || ents[0].Name() != "secret" {
				t.Errorf("outside the target: %v", ents)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "secret" {
				t.Error("a file outside the target was changed")
			}
			top, _ := os.ReadDir(base)
			for _, e := range top {
				if e.Name() != "target" && e.Name() != "outside" {
					t.Errorf("%s appeared next to the target", e.Name())
				}
			}
		})
	}
}

// paxBomb is a layer whose PAX header is larger than the reader accepts
// (archive/tar caps them at 1 MiB): a 'x' header of 3 MiB, made by hand.
func paxBomb(t *testing.T) []byte {
	value := strings.Repeat("x", 3<<20)
	record := "SCHILY.xattr.user.big=" + value + "\n"
	n := len(record) + 8
	for len(strconv.Itoa(n))+len(record)+1 != n {
		n = len(strconv.Itoa(n)) + len(record) + 1
	}
	body := strconv.Itoa(n) + " " + record
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "PaxHeaders/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), Format: tar.FormatUSTAR})
	tw.Write([]byte(body))
	tw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Format: tar.FormatUSTAR})
	tw.Close()
	raw := b.Bytes()
	raw[156] = tar.TypeXHeader
	// Recompute the first header's checksum (bytes 148..155, spaces while
	// summing).
	copy(raw[148:156], "        ")
	sum := 0
	for _, c := range raw[:512] {
		sum += int(c)
	}
	copy(raw[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return raw
}

// An unregistered media type is an error naming it; a registered
// decompressor is used.
func TestLayerMediaTypes(t *testing.T) {
	img := image(t, layerTar(t, entry{name: "f", body: "x"}))
	zstd := "application/vnd.oci.image.layer.v1.tar+zstd"
	_ = zstd
	var b bytes.Buffer
	if err := rootfs.Flatten(context.Background(), imageOfType(t, zstd, layerTar(t, entry{name: "f", body: "x"})), &b, nil); !errors.Is(err, rootfs.ErrUnsupportedLayer) || !strings.Contains(err.Error(), "zstd") {
		t.Errorf("zstd without a decompressor: %v", err)
	}
	opts := &rootfs.Options{Decompressors: map[string]func(io.Reader) (io.ReadCloser, error){
		zstd: func(r io.Reader) (io.ReadCloser, error) { return io.NopCloser(r), nil }, // a stand-in
	}}
	if err := rootfs.Flatten(context.Background(), imageOfType(t, zstd, layerTar(t, entry{name: "f", body: "x"})), &b, opts); err != nil {
		t.Errorf("with a registered decompressor: %v", err)
	}
	_ = img
}
