//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package oci_test

import "testing"

func lockable() bool { return false }

func holdLock(t *testing.T, path string) func() { return func() {} }
