package oci

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestOpenDirectOnlyOnKnownFilesystems: tmpfs (like NFS, FUSE or overlay)
// is not on the list, so blobs there go through the page cache.
func TestOpenDirectOnlyOnKnownFilesystems(t *testing.T) {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err != nil || uint32(st.Type) != 0x01021994 {
		t.Skip("no tmpfs at /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "ocipull-test-")
	if err != nil {
		t.Skip(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "blob.partial")
	os.WriteFile(path, nil, 0o644)
	if f := testDirect(t, path); f != nil {
		f.Close()
		t.Error("direct I/O opened on tmpfs")
	}
}
