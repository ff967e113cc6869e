package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

var pullCommand = &command{
	name: "pull", args: "REFERENCE DIR|FILE", min: 1, max: 2,
	summary: "pull an image or index into an OCI layout at DIR, or a docker-archive tarball at FILE",
	examples: []string{
		"ocipull pull ghcr.io/org/app:v1 ./app",
		"ocipull pull -p linux/amd64,linux/arm64 ghcr.io/org/app:v1 ./app",
		"ocipull pull --format docker-archive docker.io/library/alpine:3.20 alpine.tar && docker load -i alpine.tar",
	},
	define: func(f *flags, e *env) func(context.Context) error {
		rf := addRemoteFlags(f)
		platform := f.String("platform", "p", "", "the `PLATFORM` (os/arch[/variant]), a comma list of them, or \"all\" (default: everything the reference names; this machine's for docker-archive)")
		jobs := f.Int("jobs", "j", 4, "blobs to download in parallel")
		quiet := f.Bool("quiet", "q", "print only the final digest")
		format := f.String("format", "", "oci", "the `FORMAT` to write: oci (a layout directory) or docker-archive (a tarball for docker load and podman load)")
		name := f.String("name", "", "", "the layout entry's tag `NAME` (org.opencontainers.image.ref.name; default: the reference's tag); the full reference is recorded beside it")
		refFlags := addReferrerFlags(f, "also carry the referrers (signatures, SBOMs, attestations) of every manifest written, and theirs, into the layout",
			"with --referrers: only referrers of these `TYPES` (comma list) of the image's manifests (theirs are all carried)")
		lock := f.String("lock", "", "", "pull exactly what this lockfile (`FILE`, from ocipull lock) pins, by digest, into the layout DIR (the only argument)")
		return func(ctx context.Context) error {
			if *lock != "" {
				if len(e.args) != 1 {
					return usageErr("with --lock, want only the layout DIR")
				}
				if *jobs < 1 {
					return usageErr("--jobs must be at least 1")
				}
				return pullLocked(ctx, e, rf, *lock, e.args[0], pullOptions{jobs: *jobs, quiet: *quiet, timeout: *rf.timeout, format: "oci"})
			}
			if len(e.args) != 2 {
				return usageErr("want REFERENCE DIR|FILE, got %s", plural(len(e.args), "argument", "arguments"))
			}
			ref, err := parseRef(e.args[0])
			if err != nil {
				return err
			}
			referrers, types, err := refFlags.value()
			if err != nil {
				return err
			}
			po := pullOptions{jobs: *jobs, quiet: *quiet, timeout: *rf.timeout, format: *format, name: *name, referrers: referrers, artifactTypes: types}
			if referrers && *format != "oci" {
				return usageErr("--referrers writes into an OCI layout (--format oci)")
			}
			if *jobs < 1 {
				return usageErr("--jobs must be at least 1")
			}
			if po.platforms, po.all, err = parsePlatforms(*platform); err != nil {
				return err
			}
			switch *format {
			case "oci":
			case "docker-archive":
				if po.all || len(po.platforms) > 1 {
					return usageErr("docker-archive holds one image: give one --platform")
				}
			default:
				return usageErr("--format %q: want oci or docker-archive", safe(*format))
			}
			c, err := rf.client(ref, e)
			if err != nil {
				return err
			}
			// --jobs blobs at once, and for a large blob on a capped link
			// its ranged lanes besides: they never wait for a connection.
			c.Registry().MaxConnsPerHost = *jobs + registry.RangedFetchConns
			_, err = pull(ctx, c, ref, e.args[1], po, e)
			return err
		}
	},
}

// pullOptions are pull's flags.
type pullOptions struct {
	platforms []v1.Platform // none: everything (oci) or this machine's (docker-archive)
	all       bool
	jobs      int
	quiet     bool
	timeout   time.Duration // of the top manifest read (0: none)
	format    string        // "oci" or "docker-archive"
	name      string        // the layout entry's tag, if not the reference's
	// referrers carries the referrers of what is written (of the
	// artifact types listed, at the first level, when any are).
	referrers     bool
	artifactTypes []string
}

// parsePlatforms reads --platform: empty, "all", or a comma list.
func parsePlatforms(s string) ([]v1.Platform, bool, error) {
	if s == "" {
		return nil, false, nil
	}
	if s == "all" {
		return nil, true, nil
	}
	var ps []v1.Platform
	for _, one := range strings.Split(s, ",") {
		p, err := oci.ParsePlatform(strings.TrimSpace(one))
		if err != nil {
			return nil, false, usageErr("--platform: %v", err)
		}
		ps = append(ps, p)
	}
	return ps, false, nil
}

// pull reads ref and writes it to dest, reporting progress and a summary
// on e.stderr and the digest, alone, on e.stdout; it returns what it
// wrote.
func pull(ctx context.Context, c *registry.Client, ref registry.Reference, dest string, po pullOptions, e *env) (oci.Ref, error) {
	if po.format == "docker-archive" {
		return pullArchive(ctx, c, ref, dest, po, e)
	}
	tag := ref.Tag
	if po.name != "" {
		tag = po.name
	}
	if got, ok := upToDate(ctx, c, ref, tag, dest, po); ok {
		if !po.quiet {
			fmt.Fprintf(e.stderr, "%s is up to date in %s\n", ref, dest)
		}
		fmt.Fprintln(e.stdout, got.Digest())
		return got, nil
	}
	top, got, err := readTop(ctx, c, ref, po)
	if err != nil {
		return nil, err
	}
	layout, err := oci.CreateLayout(dest)
	if err != nil {
		return nil, err
	}
	prog := newProgress(e.stderr, po.quiet)
	defer prog.stop()
	if prog.live && isTerminal(e.stderr) {
		e.live.Store(prog)
		defer e.live.Store(nil)
	}
	opts := &oci.WriteOptions{Jobs: po.jobs, Progress: prog.update, ImageName: ref.String(),
		// What the reference resolved to and which platforms were asked
		// for: a re-pull compares them with one HEAD.
		Annotations: map[string]string{annotationResolved: string(top.Digest()), annotationPlatforms: po.platformKey()}}
	if len(po.platforms) > 1 {
		opts.Platforms = po.platforms
	}
	if err := layout.Write(ctx, tag, got, opts); err != nil {
		return nil, err
	}
	prog.stop()
	if po.referrers {
		n, err := carryReferrers(ctx, c, layout, tag, got, po.artifactTypes)
		if err != nil {
			return nil, err
		}
		if !po.quiet {
			fmt.Fprintf(e.stderr, "%s carried\n", plural(n, "referrer", "referrers"))
		}
	}
	if !po.quiet {
		fmt.Fprintf(e.stderr, "pulled %s\n  %s into %s\n", ref, prog.summary(), dest)
	}
	fmt.Fprintln(e.stdout, got.Digest())
	return got, nil
}

// Annotations of a layout entry that pull writes: the digest the
// reference resolved to (an index, when one platform's image is the
// entry) and the platforms asked for ("" for everything).
const (
	// annotationImageName is the full reference oci.WriteOptions.ImageName
	// records (containerd's and crane's annotation).
	annotationImageName = "io.containerd.image.name"
	annotationResolved  = "io.ocipull.resolved.digest"
	annotationPlatforms = "io.ocipull.platforms"
)

// platformKey is the --platform choice as recorded in a layout entry.
func (po pullOptions) platformKey() string {
	var s []string
	for _, p := range po.platforms {
		s = append(s, oci.PlatformString(p))
	}
	return strings.Join(s, ",")
}

// upToDate reports whether the layout at dir already holds what ref names
// now, under its full name and tag, for the same platforms, complete and
// verified: one HEAD request and reads of local files.
func upToDate(ctx context.Context, c *registry.Client, ref registry.Reference, tag, dir string, po pullOptions) (oci.Ref, bool) {
	layout, err := oci.OpenLayout(dir)
	if err != nil {
		return nil, false
	}
	idx, err := layout.Index()
	if err != nil {
		return nil, false
	}
	var entry v1.Descriptor
	for _, d := range idx.Manifests {
		if canonicalName(d.Annotations[annotationImageName]) == ref.String() && d.Annotations[v1.AnnotationRefName] == tag &&
			d.Annotations[annotationPlatforms] == po.platformKey() {
			entry = d
		}
	}
	if entry.Digest == "" {
		return nil, false
	}
	resolved := entry.Digest
	if r := entry.Annotations[annotationResolved]; r != "" {
		resolved = digest.Digest(r)
	}
	mctx, cancel := context.WithCancel(ctx)
	if po.timeout > 0 {
		mctx, cancel = context.WithTimeout(ctx, po.timeout)
	}
	desc, err := c.Resolve(mctx, ref.TagOrDigest())
	cancel()
	if err != nil || desc.Digest != resolved {
		return nil, false
	}
	entry.Annotations = nil
	local, err := oci.LoadRef(ctx, layout, entry)
	if err != nil {
		return nil, false
	}
	if err := verifyLocal(ctx, layout, local, po.platforms); err != nil {
		return nil, false
	}
	return local, true
}

// verifyLocal checks that everything below ref (the selected platforms'
// children of an index) is in the layout and verifies.
func verifyLocal(ctx context.Context, l *oci.Layout, ref oci.Ref, platforms []v1.Platform) error {
	switch r := ref.(type) {
	case *oci.Image:
		for _, d := range r.Blobs() {
			if d.Data != nil {
				continue
			}
			// Layout.Blob verifies the file (digest and size) before it
			// opens it: nothing more to read.
			rc, err := l.Blob(ctx, d)
			if err != nil {
				return err
			}
			rc.Close()
		}
	case *oci.Index:
		selected := map[string]bool{}
		for _, p := range platforms {
			if d, err := r.SelectPlatform(p); err == nil {
				selected[string(d.Digest)] = true
			}
		}
		for _, d := range r.Manifests() {
			if len(platforms) > 0 && d.Platform != nil && !selected[string(d.Digest)] {
				continue
			}
			child, err := r.Child(ctx, d)
			if err != nil {
				return err
			}
			if err := verifyLocal(ctx, l, child, platforms); err != nil {
				return err
			}
		}
	}
	return nil
}

// readTop reads what the reference names (top) and the manifest to pull:
// the platform's image when one platform is given, else top itself;
// under a deadline of po.timeout.
func readTop(ctx context.Context, c *registry.Client, ref registry.Reference, po pullOptions) (top, got oci.Ref, err error) {
	if po.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, po.timeout)
		defer cancel()
	}
	top, err = c.Read(ctx, ref.TagOrDigest())
	if err != nil || len(po.platforms) != 1 {
		return top, top, err
	}
	img, err := oci.ImageForPlatform(ctx, top, po.platforms[0])
	if err != nil {
		return nil, nil, err
	}
	return top, img, nil
}
