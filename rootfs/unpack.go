package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/ocipull/registry/oci"
)

// ErrNotEmpty means Unpack was given a directory that holds something.
var ErrNotEmpty = errors.New("directory is not empty")

// Unpack writes img's root filesystem into dir, which is created when
// missing and must otherwise be empty ([ErrNotEmpty]). Every file
// operation goes through an [os.Root] on dir: nothing outside it is
// created, opened or changed, whatever the layers hold. Modes and
// modification times are the layers'; ownership, device nodes and
// setuid bits follow opts (see [Options]); extended attributes are not
// set (Flatten carries them). On error dir holds what was written so far.
func Unpack(ctx context.Context, img *oci.Image, dir string, opts *Options) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(1)
	d.Close()
	if err == nil && len(names) > 0 {
		return fmt.Errorf("%s: %w", dir, ErrNotEmpty)
	}
	if err != nil && err != io.EOF {
		return err
	}
	t := newTree(root, opts, true)
	if err := t.applyImage(ctx, img); err != nil {
		return err
	}
	return t.finish()
}

// finish sets every entry's ownership, mode and time, deepest first (a
// directory made read-only last), and notes what it could not set.
func (t *tree) finish() error {
	paths := make([]string, 0, len(t.headers))
	for p := range t.headers {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool {
		di, dj := strings.Count(paths[i], "/"), strings.Count(paths[j], "/")
		if di != dj {
			return di > dj
		}
		return paths[i] < paths[j]
	})
	own := t.opts != nil && t.opts.KeepOwnership == Yes || (t.opts == nil || t.opts.KeepOwnership == Default) && os.Geteuid() == 0
	setuid := t.opts != nil && t.opts.Setuid == Yes
	for _, p := range paths {
		h := t.headers[p]
		// A hardlink's own header sets its inode's metadata too, as
		// containerd's applier does: the inode ends with the metadata of
		// the last of its names here.
		if own {
			chown := t.root.Chown
			if h.Typeflag == tar.TypeSymlink {
				chown = t.root.Lchown
			}
			if err := chown(p, h.Uid, h.Gid); err != nil {
				t.opts.note(p, "owner not set: "+err.Error())
			}
		}
		if h.Typeflag == tar.TypeSymlink {
			continue // no mode, and times would follow the link
		}
		mode := os.FileMode(h.Mode & 0o777)
		special := h.Mode & (0o4000 | 0o2000 | 0o1000)
		if special != 0 {
			if setuid {
				if special&0o4000 != 0 {
					mode |= os.ModeSetuid
				}
				if special&0o2000 != 0 {
					mode |= os.ModeSetgid
				}
				if special&0o1000 != 0 {
					mode |= os.ModeSticky
				}
			} else {
				t.opts.note(p, "setuid, setgid or sticky bit cleared")
			}
		}
		if err := t.root.Chmod(p, mode); err != nil {
			return err
		}
		if !h.ModTime.IsZero() {
			if err := t.root.Chtimes(p, h.ModTime, h.ModTime); err != nil {
				return err
			}
		}
		if len(xattrs(h)) > 0 {
			t.opts.note(p, "extended attributes not set")
		}
	}
	return nil
}

// xattrs are the extended attributes a header carries (PAX
// SCHILY.xattr.* records).
func xattrs(h *tar.Header) map[string]string {
	var out map[string]string
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if out == nil {
				out = map[string]string{}
			}
			out[name] = v
		}
	}
	return out
}
