package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Memory is a [Source] that holds content in memory, keyed by digest. It is
// how tests and demos build images and indexes without a registry. It is
// safe for concurrent use.
type Memory struct {
	// AllowDangling lets NewImage and NewIndex accept descriptors of
	// content the Memory does not hold (to test a registry's BLOB_UNKNOWN,
	// or when the content lives in another source). Without it they fail
	// at the call, naming the missing descriptor.
	AllowDangling bool

	mu      sync.RWMutex
	content map[digest.Digest][]byte
}

// Has reports whether m holds the content d names.
func (m *Memory) Has(d digest.Digest) bool {
	m.mu.RLock()
	_, ok := m.content[d]
	m.mu.RUnlock()
	return ok
}

// checkHeld refuses descriptors of content m does not hold (embedded data
// aside), unless AllowDangling.
func (m *Memory) checkHeld(what string, ds ...v1.Descriptor) error {
	if m.AllowDangling {
		return nil
	}
	for _, d := range ds {
		if d.Data == nil && !m.Has(d.Digest) {
			return fmt.Errorf("%s: %w: %s %s is not in this Memory (add it first, or set AllowDangling)", what, ErrNotFound, d.MediaType, d.Digest)
		}
	}
	return nil
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{content: map[digest.Digest][]byte{}} }

// Add stores content and returns its descriptor (sha256).
func (m *Memory) Add(mediaType string, content []byte) v1.Descriptor {
	d := digest.SHA256.FromBytes(content)
	m.mu.Lock()
	m.content[d] = content
	m.mu.Unlock()
	return v1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(content))}
}

// AddJSON marshals v and stores it with [Memory.Add].
func (m *Memory) AddJSON(mediaType string, v any) (v1.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return m.Add(mediaType, b), nil
}

// NewImage stores an OCI image manifest with the given config and layers
// (already added: a descriptor of content m does not hold is an error
// wrapping [ErrNotFound], unless AllowDangling) and returns it as a ref whose source is m.
func (m *Memory) NewImage(manifest v1.Manifest) (*Image, error) {
	if err := m.checkHeld("image", append([]v1.Descriptor{manifest.Config}, manifest.Layers...)...); err != nil {
		return nil, err
	}
	manifest.SchemaVersion = 2
	if manifest.MediaType == "" {
		manifest.MediaType = v1.MediaTypeImageManifest
	}
	d, err := m.AddJSON(manifest.MediaType, manifest)
	if err != nil {
		return nil, err
	}
	ref, err := LoadRef(context.Background(), m, d)
	if err != nil {
		return nil, err
	}
	img, ok := ref.(*Image)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not an image manifest type", ErrInvalidManifest, d.MediaType)
	}
	return img, nil
}

// NewIndex stores an OCI image index over the given children (already
// added, as for NewImage) and returns it as a ref whose source is m.
func (m *Memory) NewIndex(index v1.Index) (*Index, error) {
	if err := m.checkHeld("index", index.Manifests...); err != nil {
		return nil, err
	}
	index.SchemaVersion = 2
	if index.MediaType == "" {
		index.MediaType = v1.MediaTypeImageIndex
	}
	if index.Manifests == nil {
		index.Manifests = []v1.Descriptor{}
	}
	d, err := m.AddJSON(index.MediaType, index)
	if err != nil {
		return nil, err
	}
	ref, err := LoadRef(context.Background(), m, d)
	if err != nil {
		return nil, err
	}
	idx, ok := ref.(*Index)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not an index media type", ErrInvalidManifest, d.MediaType)
	}
	return idx, nil
}

func (m *Memory) get(d digest.Digest) ([]byte, error) {
	m.mu.RLock()
	b, ok := m.content[d]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%s: %w", d, ErrNotFound)
	}
	return b, nil
}

// Manifest implements [Source].
func (m *Memory) Manifest(_ context.Context, desc v1.Descriptor) ([]byte, error) {
	return m.get(desc.Digest)
}

// Blob implements [Source]. The stream is an [io.ReadSeeker].
func (m *Memory) Blob(_ context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	b, err := m.get(desc.Digest)
	if err != nil {
		return nil, err
	}
	return readSeekNopCloser{bytes.NewReader(b)}, nil
}

// BlobAt implements [RangeSource].
func (m *Memory) BlobAt(_ context.Context, desc v1.Descriptor, offset int64) (io.ReadCloser, error) {
	b, err := m.get(desc.Digest)
	if err != nil {
		return nil, err
	}
	if offset < 0 || offset > int64(len(b)) {
		return nil, fmt.Errorf("blob %s: offset %d out of range", desc.Digest, offset)
	}
	return readSeekNopCloser{bytes.NewReader(b[offset:])}, nil
}

type readSeekNopCloser struct{ *bytes.Reader }

func (readSeekNopCloser) Close() error { return nil }

// RangeSource is a [Source] that can open a blob at an offset, so that an
// interrupted download resumes where it stopped and a server answers a
// Range request without reading the prefix. The stream yields the bytes
// from offset to the end; the caller verifies them together with the prefix.
type RangeSource interface {
	Source
	BlobAt(ctx context.Context, desc v1.Descriptor, offset int64) (io.ReadCloser, error)
}
