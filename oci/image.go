package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is an OCI image manifest or a Docker schema-2 manifest. Its blobs
// are read lazily, under the context passed to each read, and verified.
type Image struct {
	refBase
	manifest v1.Manifest
}

func (img *Image) validate() error {
	m := &img.manifest
	if err := ValidateDescriptor(m.Config); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	for i, l := range m.Layers {
		if err := ValidateDescriptor(l); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
	}
	if m.Subject != nil {
		if err := ValidateDescriptor(*m.Subject); err != nil {
			return fmt.Errorf("subject: %w", err)
		}
	}
	return nil
}

// Manifest returns the parsed manifest. Its slices are shared with the
// image: the caller must not modify them.
func (img *Image) Manifest() v1.Manifest { return img.manifest }

// Config describes the image's config blob.
func (img *Image) Config() v1.Descriptor { return img.manifest.Config }

// Layers describes the image's layers, in order, base layer first.
func (img *Image) Layers() []v1.Descriptor { return img.manifest.Layers }

// Blobs lists the config and then the layers: every blob the image needs.
func (img *Image) Blobs() []v1.Descriptor {
	out := make([]v1.Descriptor, 0, 1+len(img.manifest.Layers))
	out = append(out, img.manifest.Config)
	return append(out, img.manifest.Layers...)
}

// OpenBlob opens the blob desc names as a [*VerifyReader]: at most desc.Size
// bytes, verified against desc.Digest while they stream. Embedded data is
// served without a fetch. The blob is read from the image's source under
// ctx, which governs the whole stream; desc.URLs are never followed. desc need not belong to the
// image, so a caller may read blobs it learnt of elsewhere through the same
// source.
func (img *Image) OpenBlob(ctx context.Context, desc v1.Descriptor) (*VerifyReader, error) {
	return OpenBlob(ctx, img.src, desc)
}

// ReadBlob reads the blob desc names into memory, verified, refusing blobs
// larger than limit bytes with [ErrTooLarge].
func (img *Image) ReadBlob(ctx context.Context, desc v1.Descriptor, limit int64) ([]byte, error) {
	if desc.Size > limit {
		return nil, fmt.Errorf("blob %s: %w: size %d exceeds the limit of %d bytes", desc.Digest, ErrTooLarge, desc.Size, limit)
	}
	rc, err := img.OpenBlob(ctx, desc)
	if err != nil {
		return nil, err
	}
	return readAllVerified(rc, desc, limit)
}

// ReadConfig reads, verifies and parses the image's config (at most
// 16 MiB). Configs of artifacts, whose media type is neither
// the OCI nor the Docker image config, are refused with
// [ErrUnsupportedMediaType].
func (img *Image) ReadConfig(ctx context.Context) (*v1.Image, error) {
	cd := img.manifest.Config
	if cd.MediaType != v1.MediaTypeImageConfig && cd.MediaType != MediaTypeDockerConfig {
		return nil, fmt.Errorf("config %s: %w: %q is not an image config", cd.Digest, ErrUnsupportedMediaType, truncate(cd.MediaType))
	}
	raw, err := img.ReadBlob(ctx, cd, maxConfigSize)
	if err != nil {
		return nil, err
	}
	var cfg v1.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("config %s: invalid JSON: %v", cd.Digest, err)
	}
	return &cfg, nil
}

// OpenBlob opens the blob desc names from src under ctx as a verified
// stream: embedded data is served from the descriptor itself, anything else
// is fetched from src and verified against desc's digest and size.
func OpenBlob(ctx context.Context, src Source, desc v1.Descriptor) (*VerifyReader, error) {
	if err := ValidateDescriptor(desc); err != nil {
		return nil, err
	}
	if desc.Data != nil {
		return NewVerifyReader(io.NopCloser(bytes.NewReader(desc.Data)), desc)
	}
	if src == nil {
		return nil, fmt.Errorf("blob %s: %w: the ref has no source", desc.Digest, ErrNotFound)
	}
	rc, err := src.Blob(ctx, desc)
	if err != nil {
		return nil, err
	}
	vr, err := NewVerifyReader(rc, desc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return vr, nil
}
