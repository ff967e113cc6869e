package oci

import (
	"os"
	"syscall"
)

// directFilesystems are the local filesystems whose direct I/O is known to
// be supported and fast (statfs magic numbers): ext2/3/4, XFS, Btrfs and
// F2FS. Elsewhere (network filesystems, where a direct write is a
// synchronous round trip; FUSE; overlay; tmpfs) landings go through the
// page cache.
var directFilesystems = map[uint32]bool{
	0xEF53:     true, // ext2, ext3, ext4
	0x58465342: true, // XFS
	0x9123683E: true, // Btrfs
	0xF2F52010: true, // F2FS
}

// setDirect turns O_DIRECT on or off for f's open file description,
// reporting whether it is now as asked. It is turned on only on the
// filesystems above.
func setDirect(f *os.File, on bool) bool {
	fd := int(f.Fd())
	if on {
		var st syscall.Statfs_t
		if err := syscall.Fstatfs(fd, &st); err != nil || !directFilesystems[uint32(st.Type)] {
			return false
		}
	}
	fl, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
	if errno != 0 {
		return false
	}
	if on {
		fl |= syscall.O_DIRECT
	} else {
		fl &^= syscall.O_DIRECT
	}
	_, _, errno = syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETFL, fl)
	return errno == 0
}
