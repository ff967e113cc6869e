package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// target is what a reading command reads: a registry reference, or an
// entry of a local OCI layout given as oci:DIR[:NAME] or --layout DIR
// [NAME], one convention across commands.
type target struct {
	ref    registry.Reference
	client *registry.Client

	layout *oci.Layout
	dir    string
	name   string // tag, full name or digest in the layout; "" for its only entry
}

// layoutFlag is the --layout flag of reading commands.
func layoutFlag(f *flags) *string {
	return f.String("layout", "", "", "read from the OCI layout at this `DIR`; the argument, if any, names an entry (tag, full name or digest)")
}

// resolveTarget reads the argument (or its absence, with --layout) as a
// target; remote ones get a client from rf.
func resolveTarget(arg, layoutDir string, rf *remoteFlags, e *env) (*target, error) {
	if layoutDir != "" {
		return openTarget(layoutDir, arg)
	}
	if arg == "" {
		return nil, usageErr("want a reference, oci:DIR[:NAME], or --layout DIR")
	}
	if rest, ok := strings.CutPrefix(arg, "oci:"); ok {
		dir, name := splitLayoutArg(rest)
		return openTarget(dir, name)
	}
	ref, err := parseRef(arg)
	if err != nil {
		return nil, err
	}
	c, err := rf.client(ref, e)
	if err != nil {
		return nil, err
	}
	return &target{ref: ref, client: c}, nil
}

// readTarget resolves a reading command's target (its argument, or
// --layout) and bounds ctx by --timeout; cancel must be called.
func readTarget(ctx context.Context, e *env, rf *remoteFlags, layout string) (*target, context.Context, context.CancelFunc, error) {
	t, err := resolveTarget(argOr(e.args, 0), layout, rf, e)
	if err != nil {
		return nil, ctx, func() {}, err
	}
	ctx, cancel := rf.metadataContext(ctx)
	return t, ctx, cancel, nil
}

// splitLayoutArg splits DIR[:NAME]: the last colon separates a name when
// what is before it is a directory (a directory name may itself hold
// colons; a name may be a full reference with a port, or a digest).
func splitLayoutArg(s string) (dir, name string) {
	if st, err := os.Stat(s); err == nil && st.IsDir() {
		return s, ""
	}
	for i := 0; i < len(s); i++ {
		if s[i] != ':' {
			continue
		}
		if st, err := os.Stat(s[:i]); err == nil && st.IsDir() {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

func openTarget(dir, name string) (*target, error) {
	l, err := oci.OpenLayout(dir)
	if err != nil {
		return nil, err
	}
	return &target{layout: l, dir: dir, name: name}, nil
}

// String names the target in messages.
func (t *target) String() string {
	if t.layout == nil {
		return t.ref.String()
	}
	if t.name == "" {
		return "oci:" + t.dir
	}
	return "oci:" + t.dir + ":" + t.name
}

// read loads the target's manifest (verified, lazy below it).
func (t *target) read(ctx context.Context) (oci.Ref, error) {
	if t.layout == nil {
		return t.client.Read(ctx, t.ref.TagOrDigest())
	}
	if t.name != "" {
		ref, err := t.layout.Read(ctx, t.name)
		if errors.Is(err, oci.ErrNotFound) {
			if d, ok := findByImageName(t.layout, t.name); ok {
				return oci.LoadRef(ctx, t.layout, d)
			}
		}
		return ref, err
	}
	idx, err := t.layout.Index()
	if err != nil {
		return nil, err
	}
	switch len(idx.Manifests) {
	case 0:
		return nil, fmt.Errorf("layout %s is empty: %w", t.dir, oci.ErrNotFound)
	case 1:
		d := idx.Manifests[0]
		d.Annotations = nil
		return oci.LoadRef(ctx, t.layout, d)
	}
	return nil, usageErr("layout %s has %s: name one (%s)", t.dir, plural(len(idx.Manifests), "entry", "entries"), strings.Join(entryNames(idx), ", "))
}

// entryNames are the names of a layout's entries: full name, else tag,
// else digest.
func entryNames(idx v1.Index) []string {
	var names []string
	for _, d := range idx.Manifests {
		switch {
		case d.Annotations[annotationImageName] != "":
			names = append(names, safe(d.Annotations[annotationImageName]))
		case d.Annotations[v1.AnnotationRefName] != "":
			names = append(names, safe(d.Annotations[v1.AnnotationRefName]))
		default:
			names = append(names, string(d.Digest))
		}
	}
	return names
}

// readPlatform reads the target and, when platform is set, the image for
// that platform of an index (an image must match it).
func (t *target) readPlatform(ctx context.Context, platform string) (oci.Ref, error) {
	var p v1.Platform
	if platform != "" {
		var err error
		if p, err = oci.ParsePlatform(platform); err != nil {
			return nil, usageErr("--platform: %v", err)
		}
	}
	ref, err := t.read(ctx)
	if err != nil || platform == "" {
		return ref, err
	}
	return oci.ImageForPlatform(ctx, ref, p)
}

// canonicalName is an image name as containerd records it
// ("docker.io/library/alpine:3.20" for "alpine:3.20", "docker.io/alpine:3.20"
// or "registry-1.docker.io/library/alpine:3.20"), or s itself when it is
// not a reference.
func canonicalName(s string) string {
	r, err := registry.ParseReference(s)
	if err != nil {
		return s
	}
	return r.String()
}

// findByImageName finds the layout entry whose full image name is name in
// any of its spellings (short or long, as this and earlier versions and
// containerd write them).
func findByImageName(l *oci.Layout, name string) (v1.Descriptor, bool) {
	idx, err := l.Index()
	if err != nil {
		return v1.Descriptor{}, false
	}
	want := canonicalName(name)
	for _, d := range idx.Manifests {
		if full := d.Annotations[annotationImageName]; full != "" && canonicalName(full) == want {
			d.Annotations = nil
			return d, true
		}
	}
	return v1.Descriptor{}, false
}
