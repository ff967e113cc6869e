//go:build unix

package main

import "syscall"

func mkfifo(p string) error { return syscall.Mkfifo(p, 0o644) }

// setUmask sets the process umask and returns what restores it.
func setUmask(m int) func() {
	old := syscall.Umask(m)
	return func() { syscall.Umask(old) }
}
