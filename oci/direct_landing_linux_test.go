package oci_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"

	"github.com/ocipull/registry/oci"
)

// residentPages counts the pages of the file at path that are in the page
// cache (mincore(2) over a shared read-only mapping).
func residentPages(t *testing.T, path string) (resident, total int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	m, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, errno := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	for _, v := range vec {
		if v&1 != 0 {
			resident++
		}
	}
	return resident, len(vec)
}

// onDirectFilesystem reports whether dir is on a filesystem where the
// cache's landing uses direct I/O (ext4, XFS, Btrfs, F2FS).
func onDirectFilesystem(dir string) bool {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return false
	}
	switch uint32(st.Type) {
	case 0xEF53, 0x58465342, 0x9123683E, 0xF2F52010:
		return true
	}
	return false
}

// TestWriteBlobDirect: the cache's landing (WriteBlob) of a large blob
// whose size is not aligned lands the right bytes, fresh and resumed from
// an unaligned prefix (read back through the landing's own file, which
// direct I/O would refuse), on disk and on tmpfs (which may refuse
// O_DIRECT); where the filesystem takes direct I/O, a fresh landing's
// aligned part never entered the page cache.
func TestWriteBlobDirect(t *testing.T) {
	f := newLargeFixture(t)
	dirs := map[string]string{"disk": t.TempDir()}
	if d, err := os.MkdirTemp("/dev/shm", "ocipull-test-"); err == nil {
		t.Cleanup(func() { os.RemoveAll(d) })
		dirs["tmpfs"] = d
	}
	ctx := context.Background()
	for name, dir := range dirs {
		for _, prefix := range []int{0, 3<<20 + 777} {
			t.Run(fmt.Sprintf("%s/prefix=%d", name, prefix), func(t *testing.T) {
				l, err := oci.CreateLayout(filepath.Join(dir, fmt.Sprint("layout-", prefix)))
				if err != nil {
					t.Fatal(err)
				}
				p := l.BlobPath(f.layer.Digest)
				if prefix > 0 {
					os.MkdirAll(filepath.Dir(p), 0o755)
					os.WriteFile(p+".partial", f.content[:prefix], 0o644)
				}
				if err := l.WriteBlob(ctx, f.img.Source(), f.layer, nil); err != nil {
					t.Fatal(err)
				}
				f.check(t, l)
				if !onDirectFilesystem(dir) {
					t.Logf("%s: no direct I/O here; content checked only", dir)
					return
				}
				// Drop what the check's read brought in, then land again.
				os.Remove(p)
				if prefix > 0 {
					os.WriteFile(p+".partial", f.content[:prefix], 0o644)
				}
				if err := l.WriteBlob(ctx, f.img.Source(), f.layer, nil); err != nil {
					t.Fatal(err)
				}
				resident, total := residentPages(t, p)
				// Only the unaligned tail (one page) may be cached; a
				// resumed landing goes through the page cache.
				limit := 1
				if prefix > 0 {
					limit = total
				}
				if resident > limit {
					t.Errorf("%d of %d pages of the landed blob in the page cache, want at most %d", resident, total, limit)
				}
				f.check(t, l)
			})
		}
	}
}

// TestLayoutWriteDirect: a durable landing (Layout.Write) of a large blob
// goes to the disk with direct I/O too where the filesystem takes it:
// only its unaligned tail passed through the page cache.
func TestLayoutWriteDirect(t *testing.T) {
	f := newLargeFixture(t)
	dir := t.TempDir()
	if !onDirectFilesystem(dir) {
		t.Skipf("%s: no direct I/O here", dir)
	}
	l, err := oci.CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(context.Background(), "v1", f.img, nil); err != nil {
		t.Fatal(err)
	}
	if resident, total := residentPages(t, l.BlobPath(f.layer.Digest)); resident > 1 {
		t.Errorf("%d of %d pages of the landed blob in the page cache, want at most 1", resident, total)
	}
	f.check(t, l)
}
