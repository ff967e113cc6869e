//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package oci

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// renameWhileLocked: with flock, a landed blob is renamed into place
// before its .partial is closed (and unlocked), so that a writer waiting for
// the lock never takes over a file that is about to become the blob.
const renameWhileLocked = true

// lockFile takes an exclusive advisory lock (flock) on f, which other
// processes and other open files of this process respect; it is released
// when f is closed. It waits as long as ctx allows, polling, since a
// blocked flock could not be cancelled.
func lockFile(ctx context.Context, f *os.File, waiting func()) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	wait := 5 * time.Millisecond
	for {
		var lerr error
		if err := raw.Control(func(fd uintptr) {
			lerr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
		}); err != nil {
			return err
		}
		switch {
		case lerr == nil:
			return nil
		case errors.Is(lerr, syscall.EWOULDBLOCK), errors.Is(lerr, syscall.EINTR):
			if waiting != nil {
				waiting()
				waiting = nil
			}
		case errors.Is(lerr, syscall.ENOTSUP), errors.Is(lerr, syscall.ENOLCK):
			// A filesystem without flock (some network mounts): the
			// in-process coordination is all there is.
			return nil
		default:
			return lerr
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if wait < 100*time.Millisecond {
			wait *= 2
		}
	}
}

// tryLock takes f's lock without waiting (shared or exclusive), reporting
// false when another open file holds a conflicting one. A filesystem
// without flock reports true: nothing is known to hold it.
func tryLock(f *os.File, exclusive bool) (bool, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	var lerr error
	if err := raw.Control(func(fd uintptr) { lerr = syscall.Flock(int(fd), how|syscall.LOCK_NB) }); err != nil {
		return false, err
	}
	switch {
	case lerr == nil:
		return true, nil
	case errors.Is(lerr, syscall.EWOULDBLOCK), errors.Is(lerr, syscall.EINTR):
		return false, nil
	case errors.Is(lerr, syscall.ENOTSUP), errors.Is(lerr, syscall.ENOLCK):
		return true, nil
	}
	return false, lerr
}

// unlockFile releases f's lock (closing f does too).
func unlockFile(f *os.File) {
	if raw, err := f.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { syscall.Flock(int(fd), syscall.LOCK_UN) })
	}
}

// lockHeld reports whether another open file (a writer, in any process)
// holds f's lock.
func lockHeld(f *os.File) (bool, error) {
	ok, err := tryLock(f, false)
	if err != nil {
		return false, err
	}
	if ok {
		unlockFile(f)
	}
	return !ok, nil
}
