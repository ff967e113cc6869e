package oci

import (
	"os"
	"syscall"
)

// directFilesystems are the local filesystems whose direct I/O is known to
// be both supported and fast (statfs magic numbers): ext2/3/4, XFS, Btrfs
// and F2FS. Elsewhere — network filesystems, where a direct write is a
// synchronous round trip, FUSE, overlay, tmpfs — blobs go through the page
// cache as usual.
var directFilesystems = map[uint32]bool{
	0xEF53:     true, // ext2, ext3, ext4
	0x58465342: true, // XFS
	0x9123683E: true, // Btrfs
	0xF2F52010: true, // F2FS
}

// openDirect opens rel for writing with O_DIRECT, or returns nil where
// direct I/O is not used (see directFilesystems) or the open is refused;
// the caller then writes through the page cache.
func (l *layoutFS) openDirect(rel string) *os.File {
	var st syscall.Statfs_t
	if err := syscall.Statfs(l.name(rel), &st); err != nil || !directFilesystems[uint32(st.Type)] {
		return nil
	}
	f, err := l.openNoFollow(rel, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}

// pipelineMemory returns size bytes, page aligned as direct I/O requires
// (anonymous mmap; the Go heap does not promise alignment), and the
// function that returns them to the system. It falls back to unaligned
// heap memory when the mapping fails.
func pipelineMemory(size int) (mem []byte, aligned bool, release func()) {
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, size), false, func() {}
	}
	return mem, true, func() { syscall.Munmap(mem) }
}
