package oci

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/opencontainers/go-digest"
)

// SkipChildren, returned by a [Walk] callback for an index, skips its children.
var SkipChildren = errors.New("skip children")

// Default bounds of one walk: real images have a handful of manifests of
// a few KiB; a hostile index can name 20,000 children of up to 4 MiB each.
const (
	// maxWalkManifests caps the manifests one [Walk] loads.
	maxWalkManifests = 10_000
	// maxWalkBytes caps the manifest bytes one [Walk] loads (and a
	// [Layout.Write] holds until it writes them).
	maxWalkBytes = 64 << 20
)

// Walk calls fn for ref and then, depth first in index order, for every
// manifest below it, loading each child lazily ([Index.Child]: verified,
// at most 8 levels), each load under ctx. A manifest reachable
// along several paths is visited once. Blobs are not read: an [*Image]
// lists them in [Image.Blobs]. Walk stops at the first error from fn or
// from a load, and with an error wrapping [ErrTooLarge] before it loads
// more than 10,000 manifests or 64 MiB of them.
func Walk(ctx context.Context, ref Ref, fn func(Ref) error) error {
	return walk(ctx, ref, walkLimits{manifests: maxWalkManifests, bytes: maxWalkBytes}, fn)
}

type walkLimits struct {
	manifests int
	bytes     int64
	// keep, when not nil, selects the children of an index to visit.
	keep func(v1.Descriptor) bool
}

func walk(ctx context.Context, ref Ref, lim walkLimits, fn func(Ref) error) error {
	seen := map[digest.Digest]bool{}
	count, total := 0, int64(0)
	admit := func(d v1.Descriptor) error {
		count++
		total += d.Size
		if count > lim.manifests {
			return fmt.Errorf("walk of %s: %w: more than %d manifests", ref.Digest(), ErrTooLarge, lim.manifests)
		}
		if total > lim.bytes {
			return fmt.Errorf("walk of %s: %w: more than %d bytes of manifests", ref.Digest(), ErrTooLarge, lim.bytes)
		}
		return nil
	}
	var visit func(Ref) error
	visit = func(r Ref) error {
		seen[r.Digest()] = true
		err := fn(r)
		if err == SkipChildren {
			return nil
		}
		if err != nil {
			return err
		}
		idx, ok := r.(*Index)
		if !ok {
			return nil
		}
		for _, d := range idx.Manifests() {
			if seen[d.Digest] || lim.keep != nil && !lim.keep(d) {
				continue
			}
			if err := admit(d); err != nil {
				return err
			}
			child, err := idx.Child(ctx, d)
			if err != nil {
				return err
			}
			if err := visit(child); err != nil {
				return err
			}
		}
		return nil
	}
	if err := admit(ref.Descriptor()); err != nil {
		return err
	}
	return visit(ref)
}
