//go:build unix

package oci

import "syscall"

// openNonBlock keeps an open of a FIFO from blocking (for regular files
// the flag has no effect).
const openNonBlock = syscall.O_NONBLOCK
