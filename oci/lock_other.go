//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package oci

import (
	"context"
	"os"
)

// renameWhileLocked is false where there is no file lock: the .partial is
// closed before it is renamed (Windows refuses to rename an open file).
const renameWhileLocked = false

// lockFile does nothing here: writers are coordinated within one Layout
// value only (see Layout.lockBlob), not across processes.
func lockFile(context.Context, *os.File, func()) error { return nil }

// tryLock always succeeds here: there is no file lock to conflict.
func tryLock(*os.File, bool) (bool, error) { return true, nil }

// unlockFile does nothing here.
func unlockFile(*os.File) {}

// lockHeld is always false here: landings are known within a Layout only.
func lockHeld(*os.File) (bool, error) { return false, nil }
