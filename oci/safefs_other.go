//go:build !unix

package oci

// openNonBlock: no such flag here; a FIFO is refused by the look before
// the open.
const openNonBlock = 0
