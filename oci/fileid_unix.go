//go:build unix

package oci

import (
	"os"
	"syscall"
)

// fileID is the device and inode of a file, comparable.
func fileID(st os.FileInfo) any {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return [2]uint64{uint64(s.Dev), uint64(s.Ino)}
	}
	return nil
}
