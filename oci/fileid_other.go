//go:build !unix

package oci

import "os"

// fileID is nil where the system gives no comparable file identity; size
// and modification time then identify a version.
func fileID(os.FileInfo) any { return nil }
