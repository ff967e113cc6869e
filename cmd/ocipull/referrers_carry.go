package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// maxCarriedReferrers bounds what --referrers brings along: a registry
// that answers with referrers without end cannot fill the disk.
const maxCarriedReferrers = 1000

// carryReferrers writes into the layout the referrers of every manifest
// the entry written under tag holds (as the layout names it: only what it
// holds), verified, and the referrers of those, breadth first; each is an
// index.json entry without a tag, found again by its subject (ocipull
// referrers oci:DIR, ocipull serve DIR). types filters the first level.
func carryReferrers(ctx context.Context, c *registry.Client, l *oci.Layout, tag string, written oci.Ref, types []string) (int, error) {
	local, err := l.Read(ctx, tag)
	if err != nil {
		local = written
	}
	var queue []digest.Digest
	oci.Walk(ctx, local, func(r oci.Ref) error {
		queue = append(queue, r.Digest())
		return nil
	})
	seen := map[digest.Digest]bool{}
	for _, d := range queue {
		seen[d] = true
	}
	firstLevel := len(queue)
	carried := 0
	for i := 0; i < len(queue); i++ {
		ds, err := c.Referrers(ctx, queue[i], "")
		if err != nil {
			return carried, fmt.Errorf("referrers of %s: %w", queue[i], err)
		}
		for _, d := range ds {
			if seen[d.Digest] || i < firstLevel && len(types) > 0 && !slices.Contains(types, d.ArtifactType) {
				continue
			}
			seen[d.Digest] = true
			if carried++; carried > maxCarriedReferrers {
				return carried, fmt.Errorf("more than %d referrers: %w", maxCarriedReferrers, oci.ErrTooLarge)
			}
			ref, err := c.Read(ctx, string(d.Digest))
			if err != nil {
				return carried, fmt.Errorf("referrer %s: %w", d.Digest, err)
			}
			if err := l.Write(ctx, "", ref, nil); err != nil {
				return carried, err
			}
			queue = append(queue, d.Digest)
		}
	}
	return carried, nil
}
