//go:build unix

package rootfs

import (
	"os"
	"syscall"
)

// inodeOf identifies a file's inode, to tell hardlinks apart.
func inodeOf(st os.FileInfo) (any, bool) {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, false
	}
	return [2]uint64{uint64(s.Dev), uint64(s.Ino)}, true
}
