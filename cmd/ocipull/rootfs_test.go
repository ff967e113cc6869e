package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// TestExportAndUnpack: the real command flattens a two-layer image from a
// registry to a tar stream and unpacks it into a directory; both hold the
// same files; a non-empty directory is refused without --force.
func TestExportAndUnpack(t *testing.T) {
	img, err := ocitest.Build(ocitest.Spec{Seed: 5, Layers: 2})
	if err != nil {
		t.Fatal(err)
	}
	reg := ocitest.NewRegistry(t, nil, map[string]oci.Ref{"app/x:v1": img})
	code, out, errs := runCmd(t, "", "export", reg.Host+"/app/x:v1")
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errs)
	}
	inTar := map[string]string{}
	tr := tar.NewReader(strings.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			inTar[h.Name] = string(b)
		}
	}
	if len(inTar) < 2 {
		t.Fatalf("export holds %d files: %v", len(inTar), inTar)
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	if code, _, errs := runCmd(t, "", "unpack", reg.Host+"/app/x:v1", dir); code != 0 {
		t.Fatalf("unpack: exit %d: %s", code, errs)
	}
	for name, content := range inTar {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(b, []byte(content)) {
			t.Errorf("%s: unpacked %d bytes (%v), exported %d", name, len(b), err, len(content))
		}
	}
	code, _, errs = runCmd(t, "", "unpack", reg.Host+"/app/x:v1", dir)
	if code != 2 || !strings.Contains(errs, "--force") {
		t.Errorf("unpack into a non-empty directory: exit %d: %s", code, errs)
	}
	if code, _, errs := runCmd(t, "", "unpack", "--force", reg.Host+"/app/x:v1", dir); code != 0 {
		t.Errorf("unpack --force: exit %d: %s", code, errs)
	}
	// To a file, atomically.
	file := filepath.Join(t.TempDir(), "rootfs.tar")
	if code, _, errs := runCmd(t, "", "export", "-o", file, reg.Host+"/app/x:v1"); code != 0 {
		t.Fatalf("export -o: exit %d: %s", code, errs)
	}
	if st, err := os.Stat(file); err != nil || st.Size() != int64(len(out)) {
		t.Errorf("export -o: %v, want %d bytes", err, len(out))
	}
}
