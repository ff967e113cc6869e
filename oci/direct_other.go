//go:build !linux

package oci

import "os"

// openDirect returns nil: direct I/O is used on Linux only, and every
// write goes through the page cache.
func openDirect(string) *os.File { return nil }

// pipelineMemory returns n heap buffers of size bytes each.
func pipelineMemory(n, size int) (bufs [][]byte, aligned bool, release func()) {
	return heapBuffers(n, size), false, func() {}
}
