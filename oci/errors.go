package oci

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of these with
// context (what was requested, expected and found), so callers test for them
// with [errors.Is].
var (
	// ErrDigestMismatch means content did not hash to the digest that named it.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch means content was shorter or longer than its descriptor's size.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrTooLarge means content exceeded a size cap (such as [MaxManifestSize]).
	ErrTooLarge = errors.New("content too large")
	// ErrInvalidManifest means manifest bytes are not a valid image manifest or index.
	ErrInvalidManifest = errors.New("invalid manifest")
	// ErrInvalidDescriptor means a descriptor has a missing media type, an
	// invalid or unsupported digest, a negative size, or data that does not match.
	ErrInvalidDescriptor = errors.New("invalid descriptor")
	// ErrUnsupportedMediaType means a manifest's media type is not one of the
	// four this package reads (OCI image manifest and index, Docker schema-2
	// manifest and manifest list).
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	// errSchema1 is a Docker schema-1 manifest, which is obsolete and
	// unsupported: it matches [ErrUnsupportedMediaType].
	errSchema1 = schema1Error{}
	// ErrNoMatchingPlatform means an index offers no child for the requested platform.
	ErrNoMatchingPlatform = errors.New("no matching platform")
	// ErrNotFound means a source (a layout, memory, a registry: it is also
	// registry.ErrNotFound) holds no manifest or blob by that name.
	ErrNotFound = errors.New("not found")
	// ErrAmbiguous means a name in a layout matches several entries (one
	// tag of several images); the message lists their full names.
	ErrAmbiguous = errors.New("ambiguous name")
	// errTooDeep is indexes nested more than maxDepth (8) levels: it
	// matches [ErrTooLarge].
	errTooDeep = fmt.Errorf("%w: manifests nested too deep", ErrTooLarge)
)

type schema1Error struct{}

func (schema1Error) Error() string {
	return "docker schema 1 manifests are obsolete and unsupported"
}

func (schema1Error) Is(target error) bool { return target == ErrUnsupportedMediaType }
