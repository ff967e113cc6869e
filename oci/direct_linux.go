package oci

import (
	"os"
	"syscall"
)

// openDirect opens path for writing with O_DIRECT, or returns nil where the
// filesystem refuses it (tmpfs on older kernels, some network and FUSE
// filesystems); the caller then writes through the page cache.
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
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
