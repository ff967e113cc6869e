package mirror

import (
	"context"
	"io"
	"iter"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// Store is what the cache needs of its storage, and all it uses: the
// cache never builds a path, opens a file or assumes a digest algorithm.
// [oci.Layout] is one (see [LayoutStore]); an object store can be
// another. Content is addressed by digest; every method that returns
// content returns it verified or says it is not.
type Store interface {
	// StatBlob describes stored content (not a landing); the error wraps
	// oci.ErrNotFound when it is not stored.
	StatBlob(ctx context.Context, d digest.Digest) (oci.BlobInfo, error)
	// BlobAt returns stored content from offset, verified against desc
	// before the first byte (once per unchanged content). The error
	// wraps oci.ErrNotFound when it is not stored, oci.ErrDigestMismatch
	// or oci.ErrSizeMismatch when what is stored is not desc's content.
	BlobAt(ctx context.Context, desc v1.Descriptor, offset int64) (io.ReadCloser, error)
	// Manifest returns stored content of at most oci.MaxManifestSize
	// bytes, unverified (the cache parses and verifies it).
	Manifest(ctx context.Context, desc v1.Descriptor) ([]byte, error)
	// WriteBlob lands desc's content from src, verified, resuming a
	// landing left earlier; concurrent writers of one digest land it
	// once. progress reports bytes landed in order, readable through
	// FollowBlob. Content that fails verification is dropped.
	WriteBlob(ctx context.Context, src oci.Source, desc v1.Descriptor, progress func(oci.BlobProgress)) error
	// FollowBlob opens a landing of d in progress (by any writer sharing
	// the store) to read it as it grows; oci.ErrNotFound when none.
	FollowBlob(ctx context.Context, d digest.Digest) (Growing, error)
	// RemoveBlob removes stored content.
	RemoveBlob(ctx context.Context, d digest.Digest) error
	// RemoveAbandoned removes a landing of d nobody holds that was last
	// written before olderThan, reporting whether it did.
	RemoveAbandoned(ctx context.Context, d digest.Digest, olderThan time.Time) (bool, error)
	// TouchBlob records that d was used at t (for least-recently-used
	// eviction shared by every process using the store).
	TouchBlob(ctx context.Context, d digest.Digest, t time.Time) error
	// Blobs lists stored content and landings.
	Blobs(ctx context.Context) iter.Seq2[oci.BlobInfo, error]
	// Exclusive runs fn under a lock that every process sharing the
	// store respects.
	Exclusive(ctx context.Context, fn func() error) error
	// Index and UpdateIndex read and rewrite the store's index of named
	// manifests (the layout's index.json), where the cache keeps tags.
	Index() (v1.Index, error)
	UpdateIndex(ctx context.Context, fn func(*v1.Index) error) error
}

// Growing is a landing followed as it grows ([oci.GrowingBlob]).
type Growing interface {
	io.ReaderAt
	io.Closer
	// Progress reports the bytes landed so far and the landing's state.
	Progress() (int64, oci.LandingState, error)
}

// RangeWriter is what a [Growing] may also do: write n landed bytes from
// off to w itself, so that a file reaches sendfile(2) (the cache's
// followers then copy nothing through user space). [oci.GrowingBlob]
// does; without it, followers read with ReadAt.
type RangeWriter interface {
	WriteRangeTo(w io.Writer, off, n int64) (int64, error)
}

// Peeker is what a [Store] may also do: return the first n bytes of
// stored content, unverified ([oci.Layout.PeekBlob] does). Listing and
// collecting the store then read only the content that starts as JSON
// could (manifests, configs) in whole; without it, every stored item of
// at most oci.MaxManifestSize bytes is read.
type Peeker interface {
	PeekBlob(ctx context.Context, d digest.Digest, n int) ([]byte, error)
}

// LayoutStore is an OCI image layout as a [Store].
type LayoutStore struct{ *oci.Layout }

// FollowBlob implements [Store].
func (s LayoutStore) FollowBlob(ctx context.Context, d digest.Digest) (Growing, error) {
	g, err := s.Layout.FollowBlob(ctx, d)
	if err != nil {
		return nil, err
	}
	return g, nil
}

var (
	_ Store  = LayoutStore{}
	_ Peeker = LayoutStore{}
)
