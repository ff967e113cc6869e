package rootfs

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"sort"

	"github.com/ocipull/registry/oci"
)

// Flatten writes img's root filesystem to w as one tar stream: every
// path of the final filesystem once, parents before children, in lexical
// order; modes, numeric ownership, modification times and extended
// attributes (PAX) as the layers say; device nodes and FIFOs as entries;
// symlinks as links; files that are one file in the result (hardlinks)
// as one file and links to it, each link after its target, so every link
// points at content present in the output (a link whose target a later
// layer removed or replaced keeps the content it had).
//
// The layers are read once each, in order, and verified; file contents go
// to one private temporary spool file (as much disk as the layers' files
// hold), the rest to memory (one header per path). Nothing is written to
// w until every layer verified.
func Flatten(ctx context.Context, img *oci.Image, w io.Writer, opts *Options) error {
	sp, err := newSpool()
	if err != nil {
		return err
	}
	defer sp.close()
	t := newTree(nil, opts, false)
	t.spool = sp
	if err := t.applyImage(ctx, img); err != nil {
		return err
	}
	return t.writeTar(ctx, w)
}

// spool holds Flatten's file contents: appended to one temporary file
// (removed at once, so nothing is left whatever happens), each path
// pointing at its extent; hardlinks share one extent.
type spool struct {
	f     *os.File
	end   int64
	files map[string]*extent
}

// extent is one file's content in the spool.
type extent struct{ off, size int64 }

func newSpool() (*spool, error) {
	f, err := os.CreateTemp("", "ocipull-flatten-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name()) // unlinked: the open file is all there is
	return &spool{f: f, files: map[string]*extent{}}, nil
}

func (s *spool) close() { s.f.Close() }

// create starts name's content at the spool's end.
func (s *spool) create(name string) io.WriteCloser {
	e := &extent{off: s.end}
	s.files[name] = e
	return &spoolWriter{s: s, e: e}
}

type spoolWriter struct {
	s *spool
	e *extent
}

func (w *spoolWriter) Write(p []byte) (int, error) {
	n, err := w.s.f.WriteAt(p, w.s.end)
	w.s.end += int64(n)
	w.e.size += int64(n)
	return n, err
}

func (w *spoolWriter) Close() error { return nil }

// writeTar writes the tree as a tar stream.
func (t *tree) writeTar(ctx context.Context, w io.Writer) error {
	paths := make([]string, 0, len(t.headers))
	for p := range t.headers {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	tw := tar.NewWriter(w)
	first := map[*extent]string{} // content → the first path emitted with it
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := *t.headers[p]
		h.Name, h.Size = p, 0
		var content *extent
		switch h.Typeflag {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg, tar.TypeLink:
			e := t.spool.files[p]
			if e == nil {
				continue // cannot happen: every file has its extent
			}
			if target, seen := first[e]; seen {
				h.Typeflag, h.Linkname = tar.TypeLink, target
				break
			}
			first[e] = p
			if h.Typeflag == tar.TypeLink {
				// The first name of its content in the output: the file
				// itself, with its target's metadata where it still is.
				if src := t.headers[h.Linkname]; src != nil && t.spool.files[h.Linkname] == e {
					h.Mode, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime = src.Mode, src.Uid, src.Gid, src.Uname, src.Gname, src.ModTime
				}
				h.Typeflag, h.Linkname = tar.TypeReg, ""
			}
			h.Size, content = e.size, e
		}
		if err := tw.WriteHeader(&h); err != nil {
			return err
		}
		if content != nil {
			if t.buf == nil {
				t.buf = make([]byte, 256<<10)
			}
			if _, err := io.CopyBuffer(onlyWriter{tw}, io.NewSectionReader(t.spool.f, content.off, content.size), t.buf); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}
