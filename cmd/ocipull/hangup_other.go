//go:build !unix

package main

// onHangup: there is no SIGHUP here.
func onHangup(func()) (stop func()) { return func() {} }
