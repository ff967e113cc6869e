package rootfs

import (
	"errors"
	"io"
)

// Options tune Unpack and Flatten. The zero value (or nil) works.
type Options struct {
	// Decompressors adds layer media types: each maps to a function that
	// turns the compressed stream into the layer's tar stream (zstd, for
	// one). gzip and uncompressed tar are built in.
	Decompressors map[string]func(io.Reader) (io.ReadCloser, error)
	// MaxEntries caps the entries of all layers together. Zero means
	// 1,000,000.
	MaxEntries int
	// KeepOwnership (Unpack) sets each file's numeric owner and group as
	// the layers say. Setting ownership needs privileges: without them it
	// fails and the entry keeps the caller's. Zero means: keep when
	// running as root.
	KeepOwnership Choice
	// Devices (Unpack) creates device nodes and FIFOs, where the system
	// lets the caller; otherwise they are skipped (with a Note). Zero
	// means: skip.
	Devices Choice
	// Setuid (Unpack) keeps setuid, setgid and sticky bits. Zero means:
	// clear them (with a Note).
	Setuid Choice
	// Note, when not nil, is told of each entry skipped or changed (a
	// device skipped, setuid cleared, an extended attribute not set).
	Note func(path, what string)
	// Progress, when not nil, is told after each layer is applied and
	// verified: how many of how many.
	Progress func(done, total int)
}

// Choice is an option's yes or no; its zero value is the default the
// option documents.
type Choice int

const (
	Default Choice = iota
	Yes
	No
)

var (
	// ErrUnsafeEntry means a layer entry would reach outside the root
	// filesystem or make it hold something it must not (a name climbing
	// out of it, an entry below a symlink, a whiteout of the root, a
	// hardlink to a path outside or absent).
	ErrUnsafeEntry = errors.New("unsafe layer entry")
	// ErrUnsupportedLayer means a layer's media type has no decompressor.
	ErrUnsupportedLayer = errors.New("unsupported layer media type")
	// ErrTooManyEntries means the layers hold more entries than
	// Options.MaxEntries.
	ErrTooManyEntries = errors.New("too many layer entries")
	// ErrDiffID means a layer's uncompressed content does not match the
	// config's diff_id for it.
	ErrDiffID = errors.New("layer does not match its diff_id")
)

const (
	defaultMaxEntries = 1_000_000
	maxPathLength     = 4096
	maxPathDepth      = 256
)

func (o *Options) maxEntries() int {
	if o == nil || o.MaxEntries <= 0 {
		return defaultMaxEntries
	}
	return o.MaxEntries
}

func (o *Options) note(path, what string) {
	if o != nil && o.Note != nil {
		o.Note(path, what)
	}
}
