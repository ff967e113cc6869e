//go:build !linux

package rootfs

import (
	"archive/tar"
	"errors"
)

// mknod: device nodes and FIFOs are created on Linux only.
func (t *tree) mknod(string, *tar.Header) error {
	return errors.New("device nodes and FIFOs are created on Linux only")
}
