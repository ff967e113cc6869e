//go:build unix

package oci

import (
	"os"
	"syscall"
)

// openNoFollow opens path with O_NOFOLLOW (a final symlink fails with
// ELOOP) and O_NONBLOCK (a FIFO does not block the open; for regular
// files the flag has no effect).
func openNoFollow(path string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, perm)
}
