package oci_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// TestLandedBlobIsRememberedVerified: a blob WriteBlob landed (verified
// as it streamed) is not hashed again by its first Blob. Shown by
// changing the file's bytes behind the layout's back while keeping its
// size, inode and modification time (the stamp the layout remembers): the
// first Blob serves what is there without hashing it. A file whose stamp
// changed is hashed again and refused.
func TestLandedBlobIsRememberedVerified(t *testing.T) {
	ctx := context.Background()
	mem := oci.NewMemory()
	content := bytes.Repeat([]byte("landed "), 10_000)
	desc := mem.Add(v1.MediaTypeImageLayer, content)
	dir := t.TempDir()
	l, err := oci.CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WriteBlob(ctx, mem, desc, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "blobs", "sha256", desc.Digest.Encoded())
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("LANDED"), 0)
	f.Close()
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	rc, err := l.Blob(ctx, desc)
	if err != nil {
		t.Fatalf("first serve of a landed blob: %v (it was hashed again)", err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if digest.FromBytes(got) == desc.Digest {
		t.Fatal("the file was not changed; the test proves nothing")
	}
	// A fresh Layout value remembers nothing: it hashes and refuses.
	l2, err := oci.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Blob(ctx, desc); err == nil {
		t.Fatal("a fresh layout served a file that does not match its digest")
	}
}
