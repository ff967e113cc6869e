package oci

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// Safe file access inside a layout directory. A layout may come from
// anyone (a download, a shared cache), so nothing under it is trusted to
// be what its name says. Every file operation goes through an [os.Root]
// opened on the layout's directory, so nothing outside it can be
// created, opened, changed or removed, whatever symlinks it holds (a
// traversal or a link out fails by construction). Inside it, every file
// the package opens is opened without blocking (a FIFO would hang an open
// for ever) and must be a regular file that is not a symlink (checked
// before and after the open, which must agree); every directory it
// creates or writes into must be a real directory, not a symlink.
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

// layoutFS is a layout's directory: every path it takes is relative to
// it, slash-separated, and built from fixed names and validated digests.
type layoutFS struct {
	root    *os.Root
	dir     string     // as the caller named it, for messages
	durable durability // syncs and renames what is written durably
}

func openLayoutFS(dir string) (*layoutFS, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	l := &layoutFS{root: root, dir: dir}
	l.durable = diskDurability{l}
	return l, nil
}

// name is rel as a path for messages.
func (l *layoutFS) name(rel string) string { return filepath.Join(l.dir, filepath.FromSlash(rel)) }

func (l *layoutFS) lstat(rel string) (os.FileInfo, error) { return l.root.Lstat(rel) }

func (l *layoutFS) remove(rel string) error { return l.root.Remove(rel) }

func (l *layoutFS) rename(from, to string) error { return l.root.Rename(from, to) }

// readDir lists the directory rel.
func (l *layoutFS) readDir(rel string) ([]os.DirEntry, error) {
	d, err := l.root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadDir(-1)
}

// openNoFollow opens rel (flag as for os.OpenFile) without blocking,
// refusing anything but a regular file at that name: the name is looked
// at before the open (not following a symlink) and after it, and both
// must be the file opened, so a swap in between is caught.
func (l *layoutFS) openNoFollow(rel string, flag int, perm os.FileMode) (*os.File, error) {
	before, err := l.root.Lstat(rel)
	if err == nil && !before.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%s)", l.name(rel), ErrNotRegular, before.Mode().Type())
	}
	f, err := l.root.OpenFile(rel, flag|openNonBlock, perm)
	if err != nil {
		return nil, err
	}
	got, err := f.Stat()
	if err == nil {
		named, nerr := l.root.Lstat(rel)
		switch {
		case errors.Is(nerr, fs.ErrNotExist) && got.Mode().IsRegular():
			// Renamed or removed since the open (a landing that
			// completed): what was opened is a regular file, and callers
			// that care compare it with the name again.
		case nerr != nil:
			err = nerr
		case !named.Mode().IsRegular() || !got.Mode().IsRegular():
			err = fmt.Errorf("%s: %w (%s)", l.name(rel), ErrNotRegular, named.Mode().Type()|got.Mode().Type())
		case !os.SameFile(named, got) || before != nil && !os.SameFile(before, got):
			err = fmt.Errorf("%s: %w: replaced while opened", l.name(rel), ErrNotRegular)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openRegular opens rel (flag as for os.OpenFile, without O_CREATE) as
// openNoFollow does.
func (l *layoutFS) openRegular(rel string, flag int) (*os.File, error) {
	return l.openNoFollow(rel, flag, 0)
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

// readRegular reads a regular file of at most limit bytes.
func (l *layoutFS) readRegular(rel string, limit int64) ([]byte, error) {
	f, err := l.openRegular(rel, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", l.name(rel), ErrTooLarge, limit)
	}
	return b, nil
}

// ensureDir makes sure rel is a real directory (not a symlink), creating
// it when missing. Its parent must already have been checked.
func (l *layoutFS) ensureDir(rel string) error {
	st, err := l.root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		if err := l.root.Mkdir(rel, layoutDirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		st, err = l.root.Lstat(rel)
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s: %w: want a directory, found %s", l.name(rel), ErrNotRegular, st.Mode().Type())
	}
	return nil
}

// createExclusive creates a new file in the directory relDir with a
// random name beginning with prefix, mode layoutFileMode before the
// umask, failing rather than opening anything that exists. It returns
// the file and its name, relative to the layout.
func (l *layoutFS) createExclusive(relDir, prefix string) (*os.File, string, error) {
	for i := 0; ; i++ {
		var b [8]byte
		rand.Read(b[:])
		rel := path.Join(relDir, prefix+hex.EncodeToString(b[:]))
		f, err := l.openNoFollow(rel, os.O_RDWR|os.O_CREATE|os.O_EXCL, layoutFileMode)
		if err == nil || !errors.Is(err, fs.ErrExist) || i == 10 {
			return f, rel, err
		}
	}
}

// openPartialFile opens or creates a blob's .partial file for writing.
// Anything else at that name (a symlink, a FIFO, a directory) is not ours
// to follow: it is removed (the link itself, never its target) and a
// regular file is created in its place.
func (l *layoutFS) openPartialFile(rel string) (*os.File, error) {
	for attempt := 0; attempt < 3; attempt++ {
		f, err := l.openNoFollow(rel, os.O_RDWR|os.O_CREATE, layoutFileMode)
		if err == nil {
			return f, nil
		}
		st, lerr := l.root.Lstat(rel)
		if lerr != nil || st.Mode().IsRegular() {
			if errors.Is(err, ErrNotRegular) {
				continue // swapped while opened: look again
			}
			return nil, err
		}
		if rerr := l.root.Remove(rel); rerr != nil {
			return nil, fmt.Errorf("%s: %w (%s) that cannot be removed: %v", l.name(rel), ErrNotRegular, st.Mode().Type(), rerr)
		}
	}
	return nil, fmt.Errorf("%s: %w: keeps being replaced", l.name(rel), ErrNotRegular)
}

// writeFileAtomic writes b to a temporary file beside rel, syncs it,
// renames it into place and syncs the directory: durable once it returns.
func (l *layoutFS) writeFileAtomic(rel string, b []byte) error {
	f, tmp, err := l.createExclusive(path.Dir(rel), ".tmp-"+path.Base(rel)+"-")
	if err != nil {
		return err
	}
	fail := func(err error) error {
		f.Close()
		l.root.Remove(tmp)
		return err
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := l.durable.syncData(f); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		l.root.Remove(tmp)
		return err
	}
	if err := l.durable.rename(tmp, rel); err != nil {
		l.root.Remove(tmp)
		return err
	}
	return l.durable.syncDir(path.Dir(rel))
}
