package main

import (
	"context"
	"fmt"
	"io"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

func cmdPull(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("pull", "[flags] REFERENCE DIR", stderr)
	var rf remoteFlags
	rf.register(fs)
	platform := fs.String("platform", "", "pull only the image for os/arch[/variant] (default: everything the reference names)")
	jobs := fs.Int("jobs", 4, "blobs to download in parallel")
	quiet := fs.Bool("quiet", false, "print only the final digest")
	ref, c, err := rf.parse(fs, args, stdin, "REFERENCE DIR")
	if err != nil {
		return err
	}
	if *jobs < 1 {
		return usageErr("--jobs must be at least 1")
	}
	c.MaxConnsPerHost = *jobs
	_, err = pull(ctx, c, ref, fs.Arg(1), *platform, *jobs, *quiet, stdout)
	return err
}

// pull reads ref and writes it to the layout at dir, reporting progress
// on out, and returns the digest written.
func pull(ctx context.Context, c *registry.Client, ref registry.Reference, dir, platform string, jobs int, quiet bool, out io.Writer) (oci.Ref, error) {
	var got oci.Ref
	var err error
	if platform != "" {
		p, perr := oci.ParsePlatform(platform)
		if perr != nil {
			return nil, usageErr("--platform: %v", perr)
		}
		got, err = c.ReadPlatform(ctx, ref.TagOrDigest(), p)
	} else {
		got, err = c.Read(ctx, ref.TagOrDigest())
	}
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	layout, err := oci.CreateLayout(dir)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	prog := newProgress(out, quiet)
	defer prog.stop()
	opts := &oci.WriteOptions{Jobs: jobs, Progress: prog.update}
	if err := layout.Write(ctx, ref.Tag, got, opts); err != nil {
		return nil, fmt.Errorf("pull %s into %s: %w", ref, dir, err)
	}
	prog.stop()
	if quiet {
		fmt.Fprintln(out, got.Digest())
	} else {
		fmt.Fprintf(out, "pulled %s\n  digest %s\n  %s into %s\n", ref, got.Digest(), prog.summary(), dir)
	}
	return got, nil
}
