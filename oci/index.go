package oci

import (
	"context"
	"fmt"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Index is an OCI image index or a Docker manifest list. Its children are
// loaded lazily, under the context passed to [Index.Child], and verified.
type Index struct {
	refBase
	index v1.Index
}

func (x *Index) validate() error {
	for i, m := range x.index.Manifests {
		if err := ValidateDescriptor(m); err != nil {
			return fmt.Errorf("manifests[%d]: %w", i, err)
		}
	}
	if x.index.Subject != nil {
		if err := ValidateDescriptor(*x.index.Subject); err != nil {
			return fmt.Errorf("subject: %w", err)
		}
	}
	return nil
}

// Index returns the parsed index. Its slices are shared with the ref: the
// caller must not modify them.
func (x *Index) Index() v1.Index { return x.index }

// Manifests describes the children, in the index's order.
func (x *Index) Manifests() []v1.Descriptor { return x.index.Manifests }

// Annotations returns the index's annotations (nil when it has none).
func (x *Index) Annotations() map[string]string { return x.index.Annotations }

// Child loads the child manifest desc names from the index's source under
// ctx and verifies it against desc's digest and size and
// media type. desc is usually one of [Index.Manifests]. A child nested more
// than 8 levels below the ref the chain started at is refused with
// an error wrapping [ErrTooLarge].
func (x *Index) Child(ctx context.Context, desc v1.Descriptor) (Ref, error) {
	return loadChild(ctx, x.src, desc, x.depth+1)
}

// LoadRef loads the manifest desc names from src and verifies it (digest,
// size, media type) as [Index.Child] does; the returned ref reads its own
// children and blobs from src, under the contexts passed to those reads.
func LoadRef(ctx context.Context, src Source, desc v1.Descriptor) (Ref, error) {
	return loadChild(ctx, src, desc, 0)
}

func loadChild(ctx context.Context, src Source, desc v1.Descriptor, depth int) (Ref, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("manifest %s: %w: more than %d levels", desc.Digest, errTooDeep, maxDepth)
	}
	if err := ValidateDescriptor(desc); err != nil {
		return nil, err
	}
	if !isManifestType(desc.MediaType) {
		if desc.MediaType == mediaTypeSchema1 || desc.MediaType == mediaTypeSchema1Signed {
			return nil, fmt.Errorf("manifest %s: %w", desc.Digest, errSchema1)
		}
		return nil, fmt.Errorf("manifest %s: %w: %q", desc.Digest, ErrUnsupportedMediaType, truncate(desc.MediaType))
	}
	if desc.Size > MaxManifestSize {
		return nil, fmt.Errorf("manifest %s: %w: size %d exceeds the limit of %d", desc.Digest, ErrTooLarge, desc.Size, MaxManifestSize)
	}
	var raw []byte
	if desc.Data != nil {
		raw = desc.Data
	} else {
		if src == nil {
			return nil, fmt.Errorf("manifest %s: %w: no source", desc.Digest, ErrNotFound)
		}
		var err error
		if raw, err = src.Manifest(ctx, desc); err != nil {
			return nil, err
		}
	}
	if int64(len(raw)) != desc.Size {
		return nil, fmt.Errorf("manifest %s: %w: got %d bytes, descriptor says %d", desc.Digest, ErrSizeMismatch, len(raw), desc.Size)
	}
	return newRef(src, raw, desc.MediaType, desc.Digest, depth)
}
