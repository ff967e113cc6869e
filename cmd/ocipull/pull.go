package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
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
	_, err = pull(ctx, c, ref, fs.Arg(1), pullOptions{platform: *platform, jobs: *jobs, quiet: *quiet, timeout: rf.timeout}, stdout)
	return err
}

// pull reads ref and writes it to the layout at dir, reporting progress
// on out, and returns the digest written.
// pullOptions are pull's flags.
type pullOptions struct {
	platform string
	jobs     int
	quiet    bool
	timeout  time.Duration // of the top manifest read (0: none)
}

func pull(ctx context.Context, c *registry.Client, ref registry.Reference, dir string, po pullOptions, out io.Writer) (oci.Ref, error) {
	platform, jobs, quiet := po.platform, po.jobs, po.quiet
	got, err := readTop(ctx, c, ref, platform, po.timeout)
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

// readTop reads the manifest to pull (the platform's image when one is
// given) under a deadline of timeout.
func readTop(ctx context.Context, c *registry.Client, ref registry.Reference, platform string, timeout time.Duration) (oci.Ref, error) {
	var p v1.Platform
	if platform != "" {
		var err error
		if p, err = oci.ParsePlatform(platform); err != nil {
			return nil, usageErr("--platform: %v", err)
		}
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if platform != "" {
		return c.ReadPlatform(ctx, ref.TagOrDigest(), p)
	}
	return c.Read(ctx, ref.TagOrDigest())
}
