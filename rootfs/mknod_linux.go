package rootfs

import (
	"archive/tar"
	"errors"
	"os"
	"path"
	"syscall"
)

// mknod creates a device node or FIFO at name, inside the root: through
// its parent directory's descriptor, opened through the root.
func (t *tree) mknod(name string, hdr *tar.Header) error {
	if t.opts == nil || t.opts.Devices != Yes {
		return errors.New("device nodes and FIFOs are skipped unless Options.Devices is Yes")
	}
	mode := uint32(hdr.Mode & 0o777)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= syscall.S_IFCHR
	case tar.TypeBlock:
		mode |= syscall.S_IFBLK
	default:
		mode |= syscall.S_IFIFO
	}
	dir, err := t.root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer dir.Close()
	maj, mnr := uint64(hdr.Devmajor), uint64(hdr.Devminor)
	dev := (maj&0xfffff000)<<32 | (maj&0xfff)<<8 | (mnr&0xffffff00)<<12 | mnr&0xff
	if err := syscall.Mknodat(int(dir.Fd()), path.Base(name), mode, int(dev)); err != nil {
		return &os.PathError{Op: "mknod", Path: name, Err: err}
	}
	return nil
}
