package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/rootfs"
)

var exportCommand = &command{
	name: "export", args: "REFERENCE|oci:DIR[:NAME]", min: 1, max: 1,
	summary:  "write an image's root filesystem as one tar stream",
	examples: []string{"ocipull export -p linux/amd64 -o rootfs.tar alpine:3.20", "ocipull export oci:./layout:v1 | tar -t"},
	define: func(f *flags, e *env) func(context.Context) error {
		rf := addRemoteFlags(f)
		platform := f.String("platform", "p", "", "the `PLATFORM` (os/arch[/variant]) of an index; default: this machine's")
		out := f.String("output", "o", "", "write to this `FILE` (created when complete; default: standard output, not a terminal)")
		return func(ctx context.Context) error {
			if *out == "" && isTerminal(e.stdout) {
				return usageErr("a tar stream is binary: give -o FILE or redirect standard output")
			}
			img, err := rootfsImage(ctx, e, rf, *platform)
			if err != nil {
				return err
			}
			opts := &rootfs.Options{Note: rootfsNotes(e)}
			if *out == "" {
				return rootfs.Flatten(ctx, img, e.stdout, opts)
			}
			return writeFileAtomically(*out, func(w io.Writer) error { return rootfs.Flatten(ctx, img, w, opts) })
		}
	},
}

var unpackCommand = &command{
	name: "unpack", args: "REFERENCE|oci:DIR[:NAME] DIR", min: 2, max: 2,
	summary:  "write an image's root filesystem into a directory",
	examples: []string{"ocipull unpack -p linux/arm64 alpine:3.20 ./sysroot"},
	define: func(f *flags, e *env) func(context.Context) error {
		rf := addRemoteFlags(f)
		platform := f.String("platform", "p", "", "the `PLATFORM` (os/arch[/variant]) of an index; default: this machine's")
		force := f.Bool("force", "", "unpack into a directory that is not empty, emptying it first")
		devices := f.Bool("devices", "", "create device nodes and FIFOs (where permitted; skipped otherwise)")
		setuid := f.Bool("keep-setuid", "", "keep setuid, setgid and sticky bits (cleared otherwise)")
		return func(ctx context.Context) error {
			dir := e.args[1]
			img, err := rootfsImage(ctx, e, rf, *platform)
			if err != nil {
				return err
			}
			if *force {
				if err := emptyDir(dir); err != nil {
					return err
				}
			}
			opts := &rootfs.Options{Note: rootfsNotes(e), Devices: rootfs.No, Setuid: rootfs.No,
				Progress: func(done, total int) { fmt.Fprintf(e.stderr, "layer %d of %d applied\n", done, total) }}
			if *devices {
				opts.Devices = rootfs.Yes
			}
			if *setuid {
				opts.Setuid = rootfs.Yes
			}
			err = rootfs.Unpack(ctx, img, dir, opts)
			if errors.Is(err, rootfs.ErrNotEmpty) {
				return usageErr("%s is not empty: give --force to empty it first", safe(dir))
			}
			return err
		}
	},
}

// rootfsImage reads the argument (a reference or oci:DIR[:NAME]) and
// picks the image for platform (this machine's when empty) from an index.
func rootfsImage(ctx context.Context, e *env, rf *remoteFlags, platform string) (*oci.Image, error) {
	t, err := resolveTarget(e.args[0], "", rf, e)
	if err != nil {
		return nil, err
	}
	mctx, cancel := rf.metadataContext(ctx)
	defer cancel()
	p := oci.DefaultPlatform()
	if platform != "" {
		if p, err = oci.ParsePlatform(platform); err != nil {
			return nil, usageErr("--platform: %v", err)
		}
	}
	ref, err := t.read(mctx)
	if err != nil {
		return nil, err
	}
	return oci.ImageForPlatform(mctx, ref, p)
}

// rootfsNotes prints what Unpack or Flatten skipped or changed, the
// first 20 of them, and then how many more.
func rootfsNotes(e *env) func(path, what string) {
	n := 0
	return func(path, what string) {
		n++
		switch {
		case n <= 20:
			fmt.Fprintf(e.stderr, "note: %s: %s\n", safe(path), safe(what))
		case n == 21:
			fmt.Fprintln(e.stderr, "note: (more notes not shown)")
		}
	}
}

// writeFileAtomically writes path through fn into a temporary file beside
// it, renamed into place only when fn succeeded.
func writeFileAtomically(path string, fn func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ocipull-export-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := fn(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// emptyDir removes what dir holds, through an os.Root on it (nothing
// outside it is touched, whatever it holds).
func emptyDir(dir string) error {
	root, err := os.OpenRoot(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer root.Close()
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := root.RemoveAll(n); err != nil {
			return err
		}
	}
	return nil
}
