package oci

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// The distribution spec's referrers tag schema keeps the referrers of a
// subject as an image index tagged "<algorithm>-<encoded>" of the
// subject's digest. A layout keeps them the same way: regclient reads
// them from that tag, oras and ocipull also by scanning for manifests
// whose subject matches, so a layout carries both.

// ReferrersTag is the tag-schema tag under which the referrers of
// subject d are kept.
func ReferrersTag(d digest.Digest) string { return d.Algorithm().String() + "-" + d.Encoded() }

// ReferrersIndex is the image index listing the referrers ds (an empty
// list, never null, when there are none).
func ReferrersIndex(ds []v1.Descriptor) v1.Index {
	if ds == nil {
		ds = []v1.Descriptor{}
	}
	return v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: ds}
}

// TagReferrers stores the referrers index of subject (listing ds, which
// the caller has written to the layout) and tags it [ReferrersTag] of
// subject in index.json, replacing an earlier list.
func (l *Layout) TagReferrers(ctx context.Context, subject digest.Digest, ds []v1.Descriptor) error {
	if err := subject.Validate(); err != nil {
		return fmt.Errorf("referrers of %q: %w", subject, ErrInvalidDescriptor)
	}
	raw, err := json.Marshal(ReferrersIndex(ds))
	if err != nil {
		return err
	}
	if len(raw) > MaxManifestSize {
		return fmt.Errorf("referrers of %s: %w", subject, ErrTooLarge)
	}
	desc := v1.Descriptor{MediaType: v1.MediaTypeImageIndex, Digest: digest.FromBytes(raw), Size: int64(len(raw)), Data: raw}
	if err := l.WriteBlob(ctx, nil, desc, nil); err != nil {
		return err
	}
	desc.Data = nil
	tag := ReferrersTag(subject)
	return l.UpdateIndex(ctx, func(idx *v1.Index) error {
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			if d.Annotations[v1.AnnotationRefName] != tag {
				kept = append(kept, d)
			}
		}
		desc.Annotations = map[string]string{v1.AnnotationRefName: tag}
		idx.Manifests = append(kept, desc)
		return nil
	})
}
