package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// What an operator does with a store, running or not: list it, purge a
// repository, a tag or a digest, collect garbage. Each works on any
// Store, under the store's exclusive lock (so two operators, or an
// operator and a cache's eviction, do not interleave), and is safe while
// caches serve from the same store: content a client is reading stays
// readable (open files outlive their names), landings in progress are
// never touched, and what a cache later misses it fetches again.

// StoredImage is one name the store keeps (an index.json entry).
type StoredImage struct {
	// Name is "<registry>/<repository>:<tag>", as the cache records tags.
	Name      string        `json:"name"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	// Size counts the manifest and the stored content it names (children
	// manifests, configs, layers), each once.
	Size int64 `json:"size"`
	// Missing counts the blobs it names that the store does not hold
	// (the cache fetches them when asked).
	Missing int `json:"missing"`
	// LastServed is when the manifest was last served, as the store
	// records it (to the minute; its modification time).
	LastServed time.Time `json:"lastServed"`
}

// Inventory is what a store holds.
type Inventory struct {
	Images    []StoredImage `json:"images"` // sorted by name
	Manifests int           `json:"manifests"`
	Blobs     int           `json:"blobs"`    // content other than manifests
	Partials  int           `json:"partials"` // landings, in progress or abandoned
	Bytes     int64         `json:"bytes"`    // of everything above
}

// Removed is what a purge or a garbage collection removed.
type Removed struct {
	Names   []string        `json:"names,omitempty"` // index.json entries
	Blobs   int             `json:"blobs"`           // content and abandoned landings
	Bytes   int64           `json:"bytes"`
	Digests []digest.Digest `json:"-"` // the content removed
}

// maxInventoryManifests bounds the manifests an inventory or a collection
// parses (each at most oci.MaxManifestSize bytes).
const maxInventoryManifests = 1 << 20

// storeScan is one pass over a store: every blob, and what each stored
// manifest names.
type storeScan struct {
	blobs     map[digest.Digest]oci.BlobInfo
	partials  []oci.BlobInfo
	manifests map[digest.Digest]parsedManifest
}

type parsedManifest struct {
	mediaType string
	names     []v1.Descriptor // children, config, layers
}

// parseStoredManifest reads raw as an image manifest or index and lists
// what it names; false when it is neither.
func parseStoredManifest(raw []byte) (parsedManifest, bool) {
	var m struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Config        *v1.Descriptor  `json:"config"`
		Layers        []v1.Descriptor `json:"layers"`
		Manifests     []v1.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(raw, &m) != nil || m.SchemaVersion != 2 || (m.Config == nil && m.Manifests == nil) {
		return parsedManifest{}, false
	}
	p := parsedManifest{mediaType: m.MediaType}
	if m.Config != nil {
		p.names = append(p.names, *m.Config)
	}
	p.names = append(p.names, m.Layers...)
	p.names = append(p.names, m.Manifests...)
	return p, true
}

// startsAsJSONObject reports whether stored content d begins, after
// white space, with '{' (true when it cannot tell).
func startsAsJSONObject(ctx context.Context, p Peeker, d digest.Digest) bool {
	b, err := p.PeekBlob(ctx, d, 512)
	if err != nil {
		return true
	}
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) == 0 || b[0] == '{'
}

func scanStore(ctx context.Context, store Store) (*storeScan, error) {
	s := &storeScan{blobs: map[digest.Digest]oci.BlobInfo{}, manifests: map[digest.Digest]parsedManifest{}}
	for info, err := range store.Blobs(ctx) {
		if err != nil {
			return nil, err
		}
		if info.Partial {
			s.partials = append(s.partials, info)
			continue
		}
		s.blobs[info.Digest] = info
		if info.Size > oci.MaxManifestSize || len(s.manifests) >= maxInventoryManifests {
			continue
		}
		if p, ok := store.(Peeker); ok && !startsAsJSONObject(ctx, p, info.Digest) {
			continue // a layer: a manifest is a JSON object
		}
		raw, err := store.Manifest(ctx, v1.Descriptor{Digest: info.Digest, Size: info.Size})
		if err != nil || digest.FromBytes(raw) != info.Digest {
			continue
		}
		if m, ok := parseStoredManifest(raw); ok {
			s.manifests[info.Digest] = m
		}
	}
	return s, nil
}

// closure is every digest d names, d included, through stored manifests.
func (s *storeScan) closure(roots ...digest.Digest) map[digest.Digest]bool {
	seen := map[digest.Digest]bool{}
	queue := append([]digest.Digest(nil), roots...)
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if seen[d] {
			continue
		}
		seen[d] = true
		for _, n := range s.manifests[d].names {
			queue = append(queue, n.Digest)
		}
	}
	return seen
}

// Inspect lists what store holds: each name with its size, what it
// lacks and when it was last served, and totals.
func Inspect(ctx context.Context, store Store) (Inventory, error) {
	var inv Inventory
	err := store.Exclusive(ctx, func() error {
		s, err := scanStore(ctx, store)
		if err != nil {
			return err
		}
		idx, err := store.Index()
		if err != nil {
			return err
		}
		for _, d := range idx.Manifests {
			img := StoredImage{Name: d.Annotations[v1.AnnotationRefName], Digest: d.Digest, MediaType: d.MediaType}
			for n := range s.closure(d.Digest) {
				if b, ok := s.blobs[n]; ok {
					img.Size += b.Size
				} else {
					img.Missing++
				}
			}
			img.LastServed = s.blobs[d.Digest].ModTime
			inv.Images = append(inv.Images, img)
		}
		sort.Slice(inv.Images, func(i, j int) bool { return inv.Images[i].Name < inv.Images[j].Name })
		inv.Manifests = len(s.manifests)
		inv.Blobs = len(s.blobs) - len(s.manifests)
		inv.Partials = len(s.partials)
		for _, b := range s.blobs {
			inv.Bytes += b.Size
		}
		for _, b := range s.partials {
			inv.Bytes += b.Size
		}
		return nil
	})
	return inv, err
}

// remove removes stored content b and counts it.
func (r *Removed) remove(ctx context.Context, store Store, b oci.BlobInfo) error {
	if err := store.RemoveBlob(ctx, b.Digest); err != nil {
		return err
	}
	r.Blobs++
	r.Bytes += b.Size
	r.Digests = append(r.Digests, b.Digest)
	return nil
}

// ErrBadPurge means a purge reference is not REGISTRY/REPOSITORY,
// REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@DIGEST.
var ErrBadPurge = errors.New("want REGISTRY/REPOSITORY, REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@DIGEST")

// purgeMatcher says which index.json names ref covers, and the digest
// ref names (when it names one).
func purgeMatcher(ref string) (func(name string, d digest.Digest) bool, error) {
	if repo, dg, ok := strings.Cut(ref, "@"); ok {
		d := digest.Digest(dg)
		if oci.ValidateDigest(d) != nil || !strings.Contains(repo, "/") {
			return nil, fmt.Errorf("purge %q: %w", safe(ref), ErrBadPurge)
		}
		return func(name string, nd digest.Digest) bool { return nd == d && strings.HasPrefix(name, repo+":") }, nil
	}
	slash := strings.LastIndex(ref, "/")
	if slash <= 0 || strings.ContainsAny(ref, " \t\n") {
		return nil, fmt.Errorf("purge %q: %w", safe(ref), ErrBadPurge)
	}
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return func(name string, _ digest.Digest) bool { return name == ref }, nil
	}
	return func(name string, _ digest.Digest) bool { return strings.HasPrefix(name, ref+":") }, nil
}

// Purge removes from store the names ref covers (a repository's every
// tag, one tag, or the tags of one digest), the manifests no remaining
// name holds, and the content only they named. Content another name
// still needs stays; a purge of a digest also removes that manifest.
func Purge(ctx context.Context, store Store, ref string) (Removed, error) {
	match, err := purgeMatcher(ref)
	if err != nil {
		return Removed{}, err
	}
	var out Removed
	err = store.Exclusive(ctx, func() error {
		var roots, named []digest.Digest
		if err := store.UpdateIndex(ctx, func(idx *v1.Index) error {
			kept := idx.Manifests[:0]
			for _, d := range idx.Manifests {
				if name := d.Annotations[v1.AnnotationRefName]; match(name, d.Digest) {
					out.Names = append(out.Names, name)
					roots = append(roots, d.Digest)
					continue
				}
				kept = append(kept, d)
				named = append(named, d.Digest)
			}
			idx.Manifests = kept
			return nil
		}); err != nil {
			return err
		}
		if repo, dg, ok := strings.Cut(ref, "@"); ok && repo != "" {
			roots = append(roots, digest.Digest(dg))
		}
		if len(roots) == 0 {
			return nil
		}
		s, err := scanStore(ctx, store)
		if err != nil {
			return err
		}
		// What the remaining names need, through stored manifests.
		keep := s.closure(named...)
		// Manifests not purged keep what they name too.
		purged := s.closure(roots...)
		var others []digest.Digest
		for d := range s.manifests {
			if !purged[d] {
				others = append(others, d)
			}
		}
		for d := range s.closure(others...) {
			keep[d] = true
		}
		for d := range purged {
			if b, stored := s.blobs[d]; stored && !keep[d] {
				if err := out.remove(ctx, store, b); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return out, err
}

// CollectGarbage removes, from store, content that no stored manifest
// names and landings nobody holds, when they were last used (served,
// written) before olderThan; manifests stay until purged. The grace
// period keeps what a pull in progress has just landed and will name
// with a manifest it has yet to store.
func CollectGarbage(ctx context.Context, store Store, olderThan time.Time) (Removed, error) {
	var out Removed
	err := store.Exclusive(ctx, func() error {
		s, err := scanStore(ctx, store)
		if err != nil {
			return err
		}
		idx, err := store.Index()
		if err != nil {
			return err
		}
		var roots []digest.Digest
		for _, d := range idx.Manifests {
			roots = append(roots, d.Digest)
		}
		for d := range s.manifests {
			roots = append(roots, d)
		}
		keep := s.closure(roots...)
		for d, b := range s.blobs {
			if !keep[d] && b.ModTime.Before(olderThan) {
				if err := out.remove(ctx, store, b); err != nil {
					return err
				}
			}
		}
		for _, p := range s.partials {
			removed, err := store.RemoveAbandoned(ctx, p.Digest, olderThan)
			if err != nil {
				return err
			}
			if removed {
				out.Blobs++
				out.Bytes += p.Size
			}
		}
		return nil
	})
	return out, err
}

// Inspect is [Inspect] of the cache's store.
func (c *Cache) Inspect(ctx context.Context) (Inventory, error) { return Inspect(ctx, c.store) }

// Purge is [Purge] on the cache's store; the cache also forgets the tags
// and content removed (another cache sharing the store learns of it when
// it next looks: a tag it still holds in memory is served again once its
// manifest is fetched again).
func (c *Cache) Purge(ctx context.Context, ref string) (Removed, error) {
	r, err := Purge(ctx, c.store, ref)
	for _, name := range r.Names {
		c.tags.forgetName(name)
	}
	for _, d := range r.Digests {
		c.acct.forget(d)
	}
	return r, err
}

// CollectGarbage is [CollectGarbage] on the cache's store; the cache
// also forgets the content removed.
func (c *Cache) CollectGarbage(ctx context.Context, olderThan time.Time) (Removed, error) {
	r, err := CollectGarbage(ctx, c.store, olderThan)
	for _, d := range r.Digests {
		c.acct.forget(d)
	}
	return r, err
}
