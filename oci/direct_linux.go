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

// pipelineMemory returns n buffers of size bytes each, page aligned as
// direct I/O requires (anonymous mmap; the Go heap does not promise
// alignment), and the function that returns them to the system. It falls
// back to unaligned heap buffers when the mapping fails.
func pipelineMemory(n, size int) (bufs [][]byte, aligned bool, release func()) {
	mem, err := syscall.Mmap(-1, 0, n*size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return heapBuffers(n, size), false, func() {}
	}
	for i := 0; i < n; i++ {
		bufs = append(bufs, mem[i*size:(i+1)*size:(i+1)*size])
	}
	return bufs, true, func() { syscall.Munmap(mem) }
}
