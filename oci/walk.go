package oci

import (
	"context"
	"errors"

	"github.com/opencontainers/go-digest"
)

// SkipChildren, returned by a [Walk] callback for an index, skips its children.
var SkipChildren = errors.New("skip children")

// Walk calls fn for ref and then, depth first in index order, for every
// manifest below it, loading each child lazily ([Index.Child]: verified,
// at most [MaxDepth] levels), each load under ctx. A manifest reachable along several paths is
// visited once. Blobs are not read: an [*Image] lists them in
// [Image.Blobs]. Walk stops at the first error from fn or from a load.
func Walk(ctx context.Context, ref Ref, fn func(Ref) error) error {
	seen := map[digest.Digest]bool{}
	var walk func(Ref) error
	walk = func(r Ref) error {
		if seen[r.Digest()] {
			return nil
		}
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
			if seen[d.Digest] {
				continue
			}
			child, err := idx.Child(ctx, d)
			if err != nil {
				return err
			}
			if err := walk(child); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(ref)
}
