//go:build !linux

package oci

import "os"

// openDirect returns nil: direct I/O is used on Linux only, and every
// write goes through the page cache.
func (l *layoutFS) openDirect(string) *os.File { return nil }

// pipelineMemory returns size bytes from the Go heap.
func pipelineMemory(size int) (mem []byte, aligned bool, release func()) {
	return make([]byte, size), false, func() {}
}
