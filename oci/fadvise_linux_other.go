//go:build linux && !(amd64 || arm64)

package oci

// fadviseDontNeed does nothing where the system call's arguments differ
// by architecture: the pages stay cached until the kernel needs them.
func fadviseDontNeed(fd int, off, n int64) {}
