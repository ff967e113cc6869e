package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of the manifests this package reads, besides image-spec's
// [v1.MediaTypeImageManifest] and [v1.MediaTypeImageIndex].
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

	mediaTypeSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// ManifestMediaTypes lists the manifest media types this package reads, in
// the order a client should prefer them (an Accept header lists them all).
// The slice is the caller's own copy.
func ManifestMediaTypes() []string { return append([]string(nil), manifestMediaTypes...) }

var manifestMediaTypes = []string{
	v1.MediaTypeImageIndex,
	v1.MediaTypeImageManifest,
	MediaTypeDockerManifestList,
	MediaTypeDockerManifest,
}

// Limits on untrusted input.
const (
	// MaxManifestSize caps a manifest at 4 MiB, the limit the reference
	// registry and most clients apply (distribution-spec, "Pushing Manifests").
	MaxManifestSize = 4 << 20
	// maxConfigSize caps an image config read into memory. Configs are
	// small JSON documents; 16 MiB leaves room for images with long histories.
	maxConfigSize = 16 << 20
	// maxDepth caps how deeply indexes may nest below the ref a walk starts at.
	// Real images nest at most two levels; verified content cannot form a cycle,
	// but a hostile registry can serve an arbitrarily deep chain.
	maxDepth = 8
)

// Source is where a ref's child manifests and blobs come from: a registry
// client, a layout directory, a server's memory. Implementations return the
// content unverified; the refs of this package verify every byte against the
// descriptor (digest and size) before handing it on. Both methods must be safe
// for concurrent use.
type Source interface {
	// Manifest returns the bytes of the manifest desc names. Implementations
	// should read no more than [MaxManifestSize] bytes.
	Manifest(ctx context.Context, desc v1.Descriptor) ([]byte, error)
	// Blob opens the blob desc names. The caller closes the stream.
	Blob(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error)
}

// Ref is one manifest, verified: an [*Image] or an [*Index].
type Ref interface {
	// Descriptor describes the manifest: media type, digest, size and,
	// where the manifest declares one, artifact type.
	Descriptor() v1.Descriptor
	// Digest is the digest of RawManifest.
	Digest() digest.Digest
	// RawManifest returns the exact bytes the digest was computed over. The
	// caller must not modify them.
	RawManifest() []byte
	// Source is where the ref's children and blobs are read from.
	Source() Source

	base() *refBase
}

type refBase struct {
	src   Source
	desc  v1.Descriptor
	raw   []byte
	depth int
}

// Descriptor describes the manifest: media type, digest, size and, where
// the manifest declares one, artifact type.
func (r *refBase) Descriptor() v1.Descriptor { return r.desc }

// Digest is the digest of the raw manifest bytes.
func (r *refBase) Digest() digest.Digest { return r.desc.Digest }

// RawManifest returns the exact bytes the digest was computed over; the
// caller must not modify them.
func (r *refBase) RawManifest() []byte { return r.raw }

// Source is where the ref's children and blobs are read from.
func (r *refBase) Source() Source { return r.src }

func (r *refBase) base() *refBase { return r }

// manifestProbe holds the fields that tell manifests apart.
type manifestProbe struct {
	SchemaVersion *int            `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Config        json.RawMessage `json:"config"`
	Layers        json.RawMessage `json:"layers"`
	Manifests     json.RawMessage `json:"manifests"`
	FSLayers      json.RawMessage `json:"fsLayers"`
}

// NewRef parses raw, the exact bytes of a manifest, into an [*Image] or an
// [*Index] whose blobs and children are read lazily from src, each read
// under the context its caller passes.
//
// mediaType is the media type the manifest was served with (a Content-Type
// header or a descriptor's mediaType); it may be empty. A bare known
// manifest type is authoritative, and a manifest whose own mediaType field
// contradicts it is refused. An empty type, a type with parameters, or a
// generic one (application/json, application/octet-stream, text/plain)
// defers to the mediaType field in the body, and failing that to the
// manifest's shape; any other type is refused.
//
// want, when not empty, is the digest raw must have (compared with want's
// algorithm); otherwise the sha256 of raw becomes the digest. NewRef refuses
// manifests over [MaxManifestSize], Docker schema 1 (wrapping [ErrUnsupportedMediaType]), other
// media types ([ErrUnsupportedMediaType]), bad JSON, a schemaVersion other
// than 2, and invalid descriptors ([ValidateDescriptor]), all wrapping
// [ErrInvalidManifest] or the more specific sentinel.
func NewRef(src Source, raw []byte, mediaType string, want digest.Digest) (Ref, error) {
	return newRef(src, raw, mediaType, want, 0)
}

func newRef(src Source, raw []byte, mediaType string, want digest.Digest, depth int) (Ref, error) {
	if len(raw) > MaxManifestSize {
		return nil, fmt.Errorf("manifest: %w: %d bytes exceeds the limit of %d", ErrTooLarge, len(raw), MaxManifestSize)
	}
	var got digest.Digest
	if want != "" {
		if err := ValidateDigest(want); err != nil {
			return nil, err
		}
		got = want.Algorithm().FromBytes(raw)
		if got != want {
			return nil, fmt.Errorf("manifest %s: %w: content hashes to %s", want, ErrDigestMismatch, got)
		}
	} else {
		got = digest.SHA256.FromBytes(raw)
	}
	mt, err := manifestMediaType(raw, mediaType)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", got, err)
	}
	b := refBase{src: src, raw: raw, depth: depth,
		desc: v1.Descriptor{MediaType: mt, Digest: got, Size: int64(len(raw))}}
	switch mt {
	case v1.MediaTypeImageManifest, MediaTypeDockerManifest:
		img := &Image{refBase: b}
		if err := json.Unmarshal(raw, &img.manifest); err != nil {
			return nil, fmt.Errorf("manifest %s: %w: %v", got, ErrInvalidManifest, err)
		}
		if err := img.validate(); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", got, err)
		}
		img.desc.ArtifactType = img.manifest.ArtifactType
		return img, nil
	default:
		idx := &Index{refBase: b}
		if err := json.Unmarshal(raw, &idx.index); err != nil {
			return nil, fmt.Errorf("index %s: %w: %v", got, ErrInvalidManifest, err)
		}
		if err := idx.validate(); err != nil {
			return nil, fmt.Errorf("index %s: %w", got, err)
		}
		idx.desc.ArtifactType = idx.index.ArtifactType
		return idx, nil
	}
}

// manifestMediaType decides the media type of raw as described on NewRef.
func manifestMediaType(raw []byte, served string) (string, error) {
	claim, err := servedClaim(served)
	if err != nil {
		return "", err
	}
	p, err := probeManifest(raw)
	if err != nil {
		return "", err
	}
	mt, err := p.mediaType(claim)
	if err != nil {
		return "", err
	}
	return mt, p.checkShape(mt)
}

// servedClaim reads the media type a manifest was served with: a bare
// manifest type (authoritative), or "" for none, a generic type or one
// with parameters (defer to the body). Schema 1 and other bare types are
// refused.
func servedClaim(served string) (string, error) {
	served = trimSpace(served)
	if served == "" {
		return "", nil
	}
	base, params, err := mime.ParseMediaType(served)
	switch {
	case base == mediaTypeSchema1 || base == mediaTypeSchema1Signed:
		return "", errSchema1
	case err != nil || len(params) > 0 || genericTypes[base]:
		return "", nil
	case isManifestType(base):
		return base, nil
	}
	// Any other type without parameters is a claim, and a wrong one.
	return "", fmt.Errorf("%w: %q", ErrUnsupportedMediaType, truncate(served))
}

// probeManifest decodes the fields that tell manifests apart, refusing
// anything but one JSON object with schemaVersion 2 (schema 1 by name).
func probeManifest(raw []byte) (*manifestProbe, error) {
	var p manifestProbe
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", ErrInvalidManifest, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalidManifest)
	}
	if p.MediaType == mediaTypeSchema1 || p.MediaType == mediaTypeSchema1Signed ||
		(p.SchemaVersion != nil && *p.SchemaVersion == 1) || p.FSLayers != nil {
		return nil, errSchema1
	}
	if p.SchemaVersion == nil || *p.SchemaVersion != 2 {
		return nil, fmt.Errorf("%w: schemaVersion must be 2", ErrInvalidManifest)
	}
	return &p, nil
}

// mediaType decides the type from the served claim, the mediaType field
// and, failing both, the shape.
func (p *manifestProbe) mediaType(claim string) (string, error) {
	mt := p.MediaType
	switch {
	case claim != "" && mt != "" && mt != claim:
		return "", fmt.Errorf("%w: served as %s but its mediaType field says %s", ErrInvalidManifest, claim, truncate(mt))
	case claim != "":
		mt = claim
	case mt == "" && p.Manifests != nil && p.Config == nil:
		mt = v1.MediaTypeImageIndex
	case mt == "" && p.Config != nil && p.Manifests == nil:
		mt = v1.MediaTypeImageManifest
	case mt == "":
		return "", fmt.Errorf("%w: no media type, and neither an image manifest nor an index by shape", ErrInvalidManifest)
	}
	if !isManifestType(mt) {
		return "", fmt.Errorf("%w: %q", ErrUnsupportedMediaType, truncate(mt))
	}
	return mt, nil
}

// checkShape refuses an index with config or layers and an image with
// manifests.
func (p *manifestProbe) checkShape(mt string) error {
	isIndex := isIndexMediaType(mt)
	if isIndex && (p.Config != nil || p.Layers != nil) {
		return fmt.Errorf("%w: %s has config or layers", ErrInvalidManifest, mt)
	}
	if !isIndex && p.Manifests != nil {
		return fmt.Errorf("%w: %s has manifests", ErrInvalidManifest, mt)
	}
	return nil
}

// genericTypes are Content-Types that registries and static file servers
// send for manifests without saying which kind they are.
var genericTypes = map[string]bool{
	"application/json":         true,
	"application/octet-stream": true,
	"binary/octet-stream":      true,
	"text/plain":               true,
}

func isManifestType(mt string) bool {
	for _, t := range manifestMediaTypes {
		if t == mt {
			return true
		}
	}
	return false
}

// isIndexMediaType reports whether mt is an OCI index or Docker manifest list.
func isIndexMediaType(mt string) bool {
	return mt == v1.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
