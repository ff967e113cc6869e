package oci

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Safe file access inside a layout directory. A layout may come from
// anyone (a download, a shared cache), so nothing under it is trusted to
// be what its name says: every file the package opens there is opened
// without following a symlink and without blocking (a FIFO would hang an
// open for ever), and must then be a regular file; every directory it
// creates or writes into below the layout's own directory must be a real
// directory, not a symlink out of it. Nothing outside the directory the
// caller named is ever created, truncated, appended to or served.
//
// File modes: files 0644 and directories 0755, before the umask, for
// everything a layout holds, so a layout written by one user can be read
// and served by another.

// ErrNotRegular means a path inside a layout that should hold a regular
// file holds something else: a symlink, a FIFO, a device, a directory.
var ErrNotRegular = errors.New("not a regular file")

const (
	layoutFileMode = 0o644
	layoutDirMode  = 0o755
)

// openRegular opens path (flag as for os.OpenFile, without O_CREATE)
// without following a final symlink and without blocking, and checks that
// it is a regular file.
func openRegular(path string, flag int) (*os.File, error) {
	f, err := openNoFollow(path, flag, 0)
	if err != nil {
		return nil, refuseLink(path, err)
	}
	if err := checkRegular(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkRegular refuses an open file that is not a regular file.
func checkRegular(f *os.File, path string) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, st.Mode().Type())
	}
	return nil
}

// refuseLink turns the error of a no-follow open of a symlink into
// ErrNotRegular, leaving other errors (not found included) as they are.
func refuseLink(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if st, lerr := os.Lstat(path); lerr == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, st.Mode().Type())
	}
	return err
}

// readRegular reads a regular file of at most limit bytes.
func readRegular(path string, limit int64) ([]byte, error) {
	f, err := openRegular(path, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", path, ErrTooLarge, limit)
	}
	return b, nil
}

// ensureDir makes sure path is a real directory (not a symlink), creating
// it when missing. Its parent must already have been checked.
func ensureDir(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(path, layoutDirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		st, err = os.Lstat(path)
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s: %w: want a directory, found %s", path, ErrNotRegular, st.Mode().Type())
	}
	return nil
}

// createExclusive creates a new file in dir with a random name beginning
// with prefix, mode layoutFileMode before the umask, failing rather than
// opening anything that exists.
func createExclusive(dir, prefix string) (*os.File, error) {
	for i := 0; ; i++ {
		var b [8]byte
		rand.Read(b[:])
		path := filepath.Join(dir, prefix+hex.EncodeToString(b[:]))
		f, err := openNoFollow(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, layoutFileMode)
		if err == nil || !errors.Is(err, fs.ErrExist) || i == 10 {
			return f, err
		}
	}
}

// openPartialFile opens or creates a blob's .partial file for writing.
// Anything else at that name (a symlink, a FIFO, a directory) is not ours
// to follow: it is removed (the link itself, never its target) and a
// regular file is created in its place.
func openPartialFile(path string) (*os.File, error) {
	for attempt := 0; attempt < 3; attempt++ {
		f, err := openNoFollow(path, os.O_RDWR|os.O_CREATE, layoutFileMode)
		if err == nil {
			if cerr := checkRegular(f, path); cerr == nil {
				return f, nil
			}
			f.Close()
		}
		st, lerr := os.Lstat(path)
		if lerr != nil || st.Mode().IsRegular() {
			if err != nil {
				return nil, err
			}
			continue
		}
		if rerr := os.Remove(path); rerr != nil {
			return nil, fmt.Errorf("%s: %w (%s) that cannot be removed: %v", path, ErrNotRegular, st.Mode().Type(), rerr)
		}
	}
	return nil, fmt.Errorf("%s: %w: keeps being replaced", path, ErrNotRegular)
}
