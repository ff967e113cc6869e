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
