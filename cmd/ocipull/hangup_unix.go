//go:build unix

package main

import (
	"os"
	"os/signal"
	"syscall"
)

// onHangup runs fn on each SIGHUP (which then no longer ends the
// process) until the returned function is called.
func onHangup(fn func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				fn()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
