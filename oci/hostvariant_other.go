//go:build !linux

package oci

// hostVariant: not detected here; the architecture's default is asked for.
func hostVariant() string { return "" }
