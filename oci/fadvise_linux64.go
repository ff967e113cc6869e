//go:build linux && (amd64 || arm64)

package oci

import "syscall"

// fadviseDontNeed is posix_fadvise(POSIX_FADV_DONTNEED).
func fadviseDontNeed(fd int, off, n int64) {
	const posixFadvDontNeed = 4
	syscall.Syscall6(syscall.SYS_FADVISE64, uintptr(fd), uintptr(off), uintptr(n), posixFadvDontNeed, 0, 0)
}
