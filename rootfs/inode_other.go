//go:build !unix

package rootfs

import "os"

// inodeOf: no inode numbers here; every file is emitted with its content.
func inodeOf(os.FileInfo) (any, bool) { return nil, false }
