package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// maxCarriedReferrers bounds what --referrers brings along: a registry
// that answers with referrers without end cannot fill the disk.
const maxCarriedReferrers = 1000

// referrerFlags are --referrers and --artifact-type, as pull and lock
// take them; what differs is what the help says they act on.
type referrerFlags struct {
	on    *bool
	types *string
}

func addReferrerFlags(f *flags, referrersUsage, typesUsage string) referrerFlags {
	return referrerFlags{on: f.Bool("referrers", "", referrersUsage), types: f.String("artifact-type", "", "", typesUsage)}
}

// value is whether referrers are asked for, and the artifact types that
// filter them (nil: all); --artifact-type without --referrers is a usage
// error.
func (r referrerFlags) value() (bool, []string, error) {
	if *r.types == "" {
		return *r.on, nil, nil
	}
	if !*r.on {
		return false, nil, usageErr("--artifact-type goes with --referrers")
	}
	return true, strings.Split(*r.types, ","), nil
}

// foundReferrer is one referrer and the manifest it refers to.
type foundReferrer struct {
	subject digest.Digest
	desc    v1.Descriptor
}

// findReferrers lists the referrers of roots and, breadth first, the
// referrers of those (signatures of attestations), each once, at most
// maxCarriedReferrers. types filters the first level (the referrers of
// roots) by artifact type; deeper levels are all taken.
func findReferrers(ctx context.Context, c *registry.Client, roots []digest.Digest, types []string) ([]foundReferrer, error) {
	queue := slices.Clone(roots)
	seen := map[digest.Digest]bool{}
	for _, d := range queue {
		seen[d] = true
	}
	var found []foundReferrer
	for i := 0; i < len(queue); i++ {
		ds, err := c.Referrers(ctx, queue[i], "")
		if err != nil {
			return nil, fmt.Errorf("referrers of %s: %w", queue[i], err)
		}
		for _, d := range ds {
			if seen[d.Digest] || i < len(roots) && len(types) > 0 && !slices.Contains(types, d.ArtifactType) {
				continue
			}
			seen[d.Digest] = true
			if len(found) == maxCarriedReferrers {
				return nil, fmt.Errorf("more than %d referrers: %w", maxCarriedReferrers, oci.ErrTooLarge)
			}
			found = append(found, foundReferrer{subject: queue[i], desc: d})
			queue = append(queue, d.Digest)
		}
	}
	return found, nil
}

// carryReferrers writes into the layout the referrers of every manifest
// the entry written under tag holds (as the layout names it: only what it
// holds), verified, and the referrers of those; each is an index.json
// entry without a tag, found again by its subject (ocipull referrers
// oci:DIR, ocipull serve DIR). types filters the first level.
func carryReferrers(ctx context.Context, c *registry.Client, l *oci.Layout, tag string, written oci.Ref, types []string) (int, error) {
	local, err := l.Read(ctx, tag)
	if err != nil {
		local = written
	}
	var roots []digest.Digest
	oci.Walk(ctx, local, func(r oci.Ref) error {
		roots = append(roots, r.Digest())
		return nil
	})
	found, err := findReferrers(ctx, c, roots, types)
	if err != nil {
		return 0, err
	}
	for i, f := range found {
		if err := writeReferrer(ctx, c, l, f.subject, f.desc.Digest); err != nil {
			return i, err
		}
	}
	return len(found), tagReferrers(ctx, l, found)
}

// tagReferrers records, for each subject, the list of its referrers
// under the tag schema's tag in the layout (where regclient looks; oras
// and ocipull also find them by their subject).
func tagReferrers(ctx context.Context, l *oci.Layout, found []foundReferrer) error {
	bySubject := map[digest.Digest][]v1.Descriptor{}
	var order []digest.Digest
	for _, f := range found {
		if bySubject[f.subject] == nil {
			order = append(order, f.subject)
		}
		bySubject[f.subject] = append(bySubject[f.subject], f.desc)
	}
	for _, s := range order {
		if err := l.TagReferrers(ctx, s, bySubject[s]); err != nil {
			return err
		}
	}
	return nil
}

// writeReferrer reads the manifest d by digest (verified) and writes it
// and its blobs into the layout, after checking it names subject as its
// subject: a registry cannot slip an unrelated manifest in as a referrer.
func writeReferrer(ctx context.Context, c *registry.Client, l *oci.Layout, subject, d digest.Digest) error {
	ref, err := c.Read(ctx, string(d))
	if err != nil {
		return fmt.Errorf("referrer %s: %w", d, err)
	}
	var got *v1.Descriptor
	switch m := ref.(type) {
	case *oci.Image:
		got = m.Manifest().Subject
	case *oci.Index:
		got = m.Index().Subject
	}
	if got == nil || got.Digest != subject {
		return fmt.Errorf("referrer %s: its subject is not %s: %w", d, subject, oci.ErrInvalidManifest)
	}
	return l.Write(ctx, "", ref, nil)
}
