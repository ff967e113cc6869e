//go:build unix

package main

import (
	"os/signal"
	"syscall"
)

// ignoreHangup keeps SIGHUP from ending the process.
func ignoreHangup() { signal.Ignore(syscall.SIGHUP) }
