//go:build !unix

package oci

import (
	"fmt"
	"os"
)

// openNoFollow refuses a path that is not a regular file before opening
// it, and checks after opening that the file opened is the one checked.
// Without O_NOFOLLOW a swap between the two is caught by the comparison.
func openNoFollow(path string, flag int, perm os.FileMode) (*os.File, error) {
	before, err := os.Lstat(path)
	if err == nil && !before.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, before.Mode().Type())
	}
	f, err := os.OpenFile(path, flag, perm)
	if err != nil {
		return nil, err
	}
	after, err := f.Stat()
	if err == nil && before != nil && !os.SameFile(before, after) {
		err = fmt.Errorf("%s: %w: replaced while opened", path, ErrNotRegular)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
