//go:build !unix

package main

// ignoreHangup: there is no SIGHUP here.
func ignoreHangup() {}
