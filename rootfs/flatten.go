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
// symlinks as links; files that share an inode in the result (hardlinks)
// as one file and links to it, each link after its target, so every link
// points at content present in the output (a link whose target a later
// layer removed or replaced gets the content it had).
//
// The layers are applied first, verified, into a private temporary
// directory (as much disk as the files hold; memory holds one header per
// path); nothing is written to w until every layer verified.
func Flatten(ctx context.Context, img *oci.Image, w io.Writer, opts *Options) error {
	tmp, err := os.MkdirTemp("", "ocipull-flatten-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return err
	}
	defer root.Close()
	t := newTree(root, opts, false)
	if err := t.applyImage(ctx, img); err != nil {
		return err
	}
	return t.writeTar(ctx, w)
}

// writeTar writes the tree as a tar stream.
func (t *tree) writeTar(ctx context.Context, w io.Writer) error {
	paths := make([]string, 0, len(t.headers))
	for p := range t.headers {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	tw := tar.NewWriter(w)
	first := map[any]string{} // inode → the first path emitted with its content
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := *t.headers[p]
		h.Name, h.Size = p, 0
		var content *os.File
		switch h.Typeflag {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg, tar.TypeLink:
			st, err := t.root.Lstat(p)
			if err != nil {
				return err
			}
			if id, ok := inodeOf(st); ok {
				if target, seen := first[id]; seen {
					h.Typeflag, h.Linkname = tar.TypeLink, target
					break
				}
				first[id] = p
			}
			if h.Typeflag == tar.TypeLink {
				// The first name of its inode in the output: the file
				// itself, with its target's metadata.
				if src := t.headers[t.headers[p].Linkname]; src != nil {
					h.Mode, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime = src.Mode, src.Uid, src.Gid, src.Uname, src.Gname, src.ModTime
				}
				h.Typeflag, h.Linkname = tar.TypeReg, ""
			}
			h.Size = st.Size()
			if content, err = t.root.Open(p); err != nil {
				return err
			}
		}
		err := tw.WriteHeader(&h)
		if err == nil && content != nil {
			_, err = io.Copy(tw, content)
		}
		if content != nil {
			content.Close()
		}
		if err != nil {
			return err
		}
	}
	return tw.Close()
}
