package oci

import (
	"os"
	"syscall"
)

// syncData is fdatasync(2): the file's data and what is needed to read
// it back, not its times.
func syncData(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// Flags of sync_file_range(2).
const (
	syncRangeWaitBefore = 1
	syncRangeWrite      = 2
	syncRangeWaitAfter  = 4
)

// startWriteback starts writeback of n bytes at off without waiting for
// it. Errors are left to the final fdatasync, which reports them.
func startWriteback(f *os.File, off, n int64) {
	syncFileRange(int(f.Fd()), off, n, syncRangeWrite)
}

// waitAndDrop waits until n bytes at off are on disk and drops them from
// the page cache (they will not be read back soon: a landed blob is read
// when it is served or unpacked, long after).
func waitAndDrop(f *os.File, off, n int64) {
	fd := int(f.Fd())
	if syncFileRange(fd, off, n, syncRangeWaitBefore|syncRangeWrite|syncRangeWaitAfter) == nil {
		fadviseDontNeed(fd, off, n)
	}
}

// pipelineMemory returns size bytes outside the Go heap (an anonymous
// mapping: 32 MiB of ring buffers add nothing for the collector to scan
// or keep), and the function that returns them to the system; heap memory
// when the mapping fails.
func pipelineMemory(size int) (mem []byte, release func()) {
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, size), func() {}
	}
	return mem, func() { syscall.Munmap(mem) }
}
