//go:build !linux

package oci

import "os"

// syncData is fsync: the file's data and metadata.
func syncData(f *os.File) error { return f.Sync() }

// startWriteback does nothing: the final sync writes everything.
func startWriteback(*os.File, int64, int64) {}

// waitAndDrop does nothing: the final sync writes everything.
func waitAndDrop(*os.File, int64, int64) {}

// pipelineMemory returns size bytes from the Go heap.
func pipelineMemory(size int) (mem []byte, release func()) {
	return make([]byte, size), func() {}
}
