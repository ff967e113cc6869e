//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package oci_test

import (
	"os"
	"syscall"
	"testing"
)

func lockable() bool { return true }

// holdLock takes the flock another process would hold on path.
func holdLock(t *testing.T, path string) (release func()) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }
}
