package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry/internal/safetext"
	"github.com/ocipull/registry/oci"
)

// Whiteout names (image-spec, "Whiteouts").
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// tree is the root filesystem being built: its entries' headers, by
// cleaned path (the memory bound: one header per path), and their files
// under root. Every change on disk goes through root.
type tree struct {
	root    *os.Root // Unpack's target; nil for Flatten
	spool   *spool   // Flatten's content store; nil for Unpack
	opts    *Options
	headers map[string]*tar.Header
	entries int // entries read, all layers
	// layer is the index of the layer being applied, and added what it
	// added (whiteouts apply to lower layers only).
	layer int
	added map[string]bool
	// devices lists character and block devices and FIFOs to create (the
	// directory sink), or nil to keep them as headers only.
	devices bool
	// consumed is how many bytes of the layer's tar stream were read: a
	// file can hold no more than came in (no sparse expansion).
	consumed func() int64
	// buf is the one copy buffer of every file's content.
	buf []byte
}

func newTree(root *os.Root, opts *Options, devices bool) *tree {
	return &tree{root: root, opts: opts, headers: map[string]*tar.Header{}, devices: devices}
}

// The tree's file operations: on disk through the root (Unpack), or in
// the spool (Flatten: contents appended to one file, nothing else on
// disk).

func (t *tree) mkdir(name string) error {
	if t.spool != nil {
		return nil
	}
	if err := t.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

func (t *tree) symlink(target, name string) error {
	if t.spool != nil {
		return nil
	}
	return t.root.Symlink(target, name)
}

func (t *tree) link(target, name string) error {
	if t.spool != nil {
		t.spool.files[name] = t.spool.files[target]
		return nil
	}
	return t.root.Link(target, name)
}

func (t *tree) removeAllAt(name string) error {
	if t.spool != nil {
		delete(t.spool.files, name)
		return nil
	}
	if err := t.root.RemoveAll(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// applyImage applies every layer of img in order.
func (t *tree) applyImage(ctx context.Context, img *oci.Image) error {
	ids, err := diffIDs(ctx, img)
	if err != nil {
		return err
	}
	for i, desc := range img.Layers() {
		var want digest.Digest
		if ids != nil {
			want = ids[i]
		}
		ls, err := openLayer(ctx, img, desc, want, t.opts)
		if err != nil {
			return err
		}
		t.consumed = func() int64 { return ls.read }
		err = t.applyLayer(ctx, i, ls.tr)
		if err == nil {
			err = ls.finish()
		} else {
			ls.close()
		}
		if err != nil {
			return fmt.Errorf("layer %d (%s): %w", i, desc.Digest, err)
		}
		if t.opts != nil && t.opts.Progress != nil {
			t.opts.Progress(i+1, len(img.Layers()))
		}
	}
	return nil
}

// applyLayer applies one layer's tar stream.
func (t *tree) applyLayer(ctx context.Context, i int, tr *tar.Reader) error {
	t.layer, t.added = i, map[string]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		t.entries++
		if t.entries > t.opts.maxEntries() {
			return fmt.Errorf("%w: more than %d", ErrTooManyEntries, t.opts.maxEntries())
		}
		if err := t.apply(hdr, tr); err != nil {
			return fmt.Errorf("%s: %w", safetext.String(hdr.Name, 300), err)
		}
	}
}

// clean turns a name from a layer into a path relative to the root:
// leading "/" and "./" dropped, cleaned. A name that climbs out of the
// root, is too long or too deep is unsafe; "" means the root itself.
func clean(name string) (string, error) {
	if len(name) > maxPathLength {
		return "", fmt.Errorf("%w: a name of %d bytes", ErrUnsafeEntry, len(name))
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: a NUL in a name", ErrUnsafeEntry)
	}
	p := path.Clean("/" + name)
	if strings.Contains(name, "..") {
		// Only a name that stays inside once resolved from the root
		// itself is kept; "a/../../b" climbs out.
		depth := 0
		for _, c := range strings.Split(name, "/") {
			switch c {
			case "..":
				depth--
			case "", ".":
			default:
				depth++
			}
			if depth < 0 {
				return "", fmt.Errorf("%w: the name climbs out of the root", ErrUnsafeEntry)
			}
		}
	}
	p = strings.TrimPrefix(p, "/")
	if strings.Count(p, "/") >= maxPathDepth {
		return "", fmt.Errorf("%w: more than %d levels deep", ErrUnsafeEntry, maxPathDepth)
	}
	return p, nil
}

// apply applies one entry.
func (t *tree) apply(hdr *tar.Header, r io.Reader) error {
	name, err := clean(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	switch {
	case base == opaqueMarker:
		return t.opaque(dir)
	case strings.HasPrefix(base, whiteoutPrefix):
		target := base[len(whiteoutPrefix):]
		if target == "" || target == "." || target == ".." || strings.Contains(target, "/") {
			return fmt.Errorf("%w: a whiteout of %q", ErrUnsafeEntry, target)
		}
		return t.whiteout(path.Join(dir, target))
	case name == "":
		return nil // the root itself: its metadata is the caller's
	}
	if err := t.parents(name); err != nil {
		return err
	}
	record, err := t.place(name, hdr, r)
	if err != nil || !record {
		return err
	}
	h := *hdr
	h.Name = name
	if h.Typeflag == tar.TypeRegA {
		h.Typeflag = tar.TypeReg
	}
	t.headers[name] = &h
	t.added[name] = true
	return nil
}

// place makes the entry name of hdr's type (removing what was there);
// record is false for an entry that is not part of the tree (a device not
// made, a global header, an unknown type).
func (t *tree) place(name string, hdr *tar.Header, r io.Reader) (record bool, err error) {
	switch hdr.Typeflag {
	case tar.TypeDir:
		if old := t.headers[name]; old != nil && old.Typeflag == tar.TypeDir {
			return true, nil
		}
		return true, t.replace(name, func() error { return t.mkdir(name) })
	case tar.TypeReg, tar.TypeRegA:
		return true, t.replace(name, func() error { return t.writeFile(name, r, hdr.Size) })
	case tar.TypeSymlink:
		return true, t.replace(name, func() error { return t.symlink(hdr.Linkname, name) })
	case tar.TypeLink:
		return t.placeLink(name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if err := t.removeAt(name); err != nil || !t.devices {
			return err == nil, err
		}
		if err := t.mknod(name, hdr); err != nil {
			t.opts.note(name, "not created: "+err.Error())
			return false, nil // not recorded: it is not there
		}
		return true, nil
	case tar.TypeXGlobalHeader:
		return false, nil
	}
	t.opts.note(name, fmt.Sprintf("skipped: entry type %q", hdr.Typeflag))
	return false, nil
}

// replace removes what is at name, then makes the new entry.
func (t *tree) replace(name string, make func() error) error {
	if err := t.removeAt(name); err != nil {
		return err
	}
	return make()
}

// placeLink makes name a hardlink to linkname, which must be a file the
// tree holds.
func (t *tree) placeLink(name, linkname string) (bool, error) {
	target, err := clean(linkname)
	if err != nil {
		return false, fmt.Errorf("hardlink target: %w", err)
	}
	th := t.headers[target]
	if target == "" || th == nil || (th.Typeflag != tar.TypeReg && th.Typeflag != tar.TypeRegA && th.Typeflag != tar.TypeLink) {
		return false, fmt.Errorf("%w: a hardlink to %q, which is not a file in the image", ErrUnsafeEntry, safetext.String(target, 200))
	}
	if target == name {
		return false, nil
	}
	return true, t.replace(name, func() error { return t.link(target, name) })
}

// parents makes sure every ancestor of name is a directory: a missing one
// is made (0755 until a layer says otherwise); a file or link in the way
// is replaced by a directory, as the runtimes do; a symlink in the way is
// unsafe (the entry would be written through it).
func (t *tree) parents(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	var missing []string
	for d := dir; d != "."; d = path.Dir(d) {
		// The directories leading to an entry are this layer's too: a
		// whiteout or opaque marker of it leaves them.
		t.added[d] = true
		h := t.headers[d]
		if h == nil {
			missing = append(missing, d)
			continue
		}
		if h.Typeflag == tar.TypeSymlink {
			return fmt.Errorf("%w: it lies below the symlink %q", ErrUnsafeEntry, safetext.String(d, 200))
		}
		if h.Typeflag != tar.TypeDir {
			missing = append(missing, d)
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if h := t.headers[d]; h != nil && h.Typeflag != tar.TypeDir {
			if err := t.removeAt(d); err != nil {
				return err
			}
		}
		if err := t.mkdir(d); err != nil {
			return err
		}
		t.headers[d] = &tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}
	}
	return nil
}

// removeAt removes whatever is at name (recursively), on disk and from
// the headers.
func (t *tree) removeAt(name string) error {
	h := t.headers[name]
	if h == nil {
		return nil
	}
	if h.Typeflag == tar.TypeDir {
		t.forgetBelow(name, nil)
	}
	delete(t.headers, name)
	return t.removeAllAt(name)
}

// forgetBelow drops the headers below dir, except those keep says.
func (t *tree) forgetBelow(dir string, keep map[string]bool) {
	prefix := dir + "/"
	if dir == "" {
		prefix = ""
	}
	for p := range t.headers {
		if strings.HasPrefix(p, prefix) && !keep[p] {
			delete(t.headers, p)
			if t.spool != nil {
				delete(t.spool.files, p)
			}
		}
	}
}

// whiteout removes target and everything below it, as lower layers made
// it (a whiteout applies to lower layers only: a directory this layer
// writes into is emptied of the rest, a file this layer added stays).
func (t *tree) whiteout(target string) error {
	h := t.headers[target]
	if h == nil {
		return nil
	}
	if t.added[target] {
		if h.Typeflag == tar.TypeDir {
			return t.opaque(target)
		}
		return nil
	}
	return t.removeAt(target)
}

// opaque empties dir of what lower layers put in it; this layer's own
// entries, and the directories leading to them, stay.
func (t *tree) opaque(dir string) error {
	if dir != "" {
		if h := t.headers[dir]; h == nil || h.Typeflag != tar.TypeDir {
			return nil
		}
	}
	prefix := dir + "/"
	if dir == "" {
		prefix = ""
	}
	var gone []string
	for p := range t.headers {
		if strings.HasPrefix(p, prefix) && !t.added[p] {
			gone = append(gone, p)
		}
	}
	// Shallowest first: removing a directory takes what is below it.
	sort.Slice(gone, func(i, j int) bool { return len(gone[i]) < len(gone[j]) })
	for _, p := range gone {
		if _, ok := t.headers[p]; !ok {
			continue
		}
		if err := t.removeAt(p); err != nil {
			return err
		}
	}
	return nil
}

// writeFile creates name with exactly size bytes from r (owner-only
// until the final modes are set). A body shorter than its header says is
// an error (the tar reader's).
func (t *tree) writeFile(name string, r io.Reader, size int64) error {
	var f io.WriteCloser
	if t.spool != nil {
		f = t.spool.create(name)
	} else {
		file, err := t.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		f = file
	}
	var before int64
	if t.consumed != nil {
		before = t.consumed()
		// A sparse entry makes the tar reader invent its holes: a small
		// layer could claim terabytes. Every byte written must have come
		// in (checked per chunk, so a lie costs at most one chunk).
		r = &inflowCheck{r: r, start: before, consumed: t.consumed}
	}
	if t.buf == nil {
		t.buf = make([]byte, 256<<10)
	}
	n, err := io.CopyBuffer(onlyWriter{f}, io.LimitReader(r, size), t.buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("%w: %d of %d bytes", io.ErrUnexpectedEOF, n, size)
	}
	return err
}

// inflowCheck fails a file's copy once more bytes came out than the
// layer's stream delivered since the file began (a sparse entry's holes).
type inflowCheck struct {
	r        io.Reader
	start    int64
	out      int64
	consumed func() int64
}

func (c *inflowCheck) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.out += int64(k)
	if c.out > c.consumed()-c.start {
		return k, fmt.Errorf("%w: a sparse file (more bytes than the layer holds)", ErrUnsafeEntry)
	}
	return k, err
}

// onlyWriter hides a writer's ReadFrom, so that io.CopyBuffer uses the
// tree's buffer instead of allocating one per file.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }
