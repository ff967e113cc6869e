package oci

import (
	"os"
	"runtime"
)

// durability makes what a layout writes durable, in this order for each
// file: its data synced, then renamed into place, then its directory
// synced, so that a name never points at bytes that a crash could lose
// and a crash never loses a name the index already gave out. It is the
// seam through which tests record that order.
type durability interface {
	syncData(f *os.File) error
	rename(from, to string) error
	syncDir(rel string) error
}

// diskDurability is the real thing.
type diskDurability struct{ fs *layoutFS }

func (d diskDurability) syncData(f *os.File) error { return syncData(f) }

func (d diskDurability) rename(from, to string) error { return d.fs.root.Rename(from, to) }

// syncDir fsyncs the directory rel, so that the names renamed into it
// survive a crash. Windows cannot sync a directory (NTFS journals names).
func (d diskDurability) syncDir(rel string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	dir, err := d.fs.root.Open(rel)
	if err != nil {
		return err
	}
	err = dir.Sync()
	if cerr := dir.Close(); err == nil {
		err = cerr
	}
	return err
}
