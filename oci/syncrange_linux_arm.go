//go:build linux && arm

package oci

import "errors"

// syncFileRange is not used on 32-bit arm (whose system call takes its
// arguments in another order): without write-behind, the final
// fdatasync writes everything.
func syncFileRange(int, int64, int64, int) error { return errors.ErrUnsupported }
