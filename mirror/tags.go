package mirror

import (
	"context"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ocipull/registry/oci"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// tagKey names a tag of one upstream repository.
type tagKey struct{ up, repo, tag string }

// tagEntry is a tag as the cache knows it.
type tagEntry struct {
	desc    v1.Descriptor
	checked time.Time // last confirmed upstream (zero: read from the store, not yet confirmed)
}

// tagStore keeps the tags the cache resolved: in memory, an LRU map of at
// most MaxTags entries; in the store, as index.json entries named
// "<registry>/<repository>:<tag>" (org.opencontainers.image.ref.name),
// which other tools reading the directory understand. index.json is
// rewritten at most once a second, in the background, with the tags
// whose manifests are stored: a new tag costs one map update, and a burst
// of them one write. A tag lost in a crash is resolved again.
type tagStore struct {
	c       *Cache
	mem     *lru[tagKey, tagEntry]
	kick    chan struct{}
	done    chan struct{}
	dirty   atomic.Bool
	pending atomic.Bool // tags held back until their manifests are stored

	mu      sync.Mutex
	dropped map[digest.Digest]bool // evicted manifests whose tags must go
	removed map[string]bool        // names of tags gone upstream
}

// tagWriteDelay is how long tag changes gather before index.json is
// rewritten.
const tagWriteDelay = time.Second

func newTagStore(ctx context.Context, c *Cache) (*tagStore, error) {
	ts := &tagStore{c: c, mem: newLRU[tagKey, tagEntry](c.cfg.MaxTags, 0), kick: make(chan struct{}, 1),
		done: make(chan struct{}), dropped: map[digest.Digest]bool{}, removed: map[string]bool{}}
	idx, err := c.store.Index()
	if err != nil {
		return nil, err
	}
	for _, d := range idx.Manifests {
		name := d.Annotations[v1.AnnotationRefName]
		host, rest, ok := strings.Cut(name, "/")
		repo, tag, ok2 := cutLast(rest, ":")
		if !ok || !ok2 {
			continue
		}
		d.Annotations = nil
		for _, up := range c.upstreams {
			if up.name == host {
				ts.mem.put(tagKey{up.key, repo, tag}, tagEntry{desc: d})
				// The tag was resolved for this repository: its
				// manifest is known there.
				c.trust.add(blobKey{up.key, repo, d.Digest})
			}
		}
	}
	go ts.writer(ctx)
	return ts, nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

func (ts *tagStore) get(k tagKey) (tagEntry, bool) {
	e, _, ok := ts.mem.get(k)
	return e, ok
}

// set records a tag confirmed upstream now; changed says whether the
// store must learn of it.
func (ts *tagStore) set(k tagKey, desc v1.Descriptor, changed bool) {
	ts.mem.put(k, tagEntry{desc: v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}, checked: time.Now()})
	if changed {
		ts.changed()
	}
}

func (ts *tagStore) remove(k tagKey) {
	if _, ok := ts.get(k); ok {
		ts.mem.remove(k)
		if up := ts.c.upstreams[k.up]; up != nil {
			ts.mu.Lock()
			if len(ts.removed) < ts.c.cfg.MaxTags {
				ts.removed[up.name+"/"+k.repo+":"+k.tag] = true
			}
			ts.mu.Unlock()
		}
		ts.changed()
	}
}

// forgetName forgets the tag an index.json name ("<registry>/<repo>:<tag>")
// records, without marking it gone upstream: an operator purged it.
func (ts *tagStore) forgetName(name string) {
	host, rest, ok := strings.Cut(name, "/")
	repo, tag, ok2 := cutLast(rest, ":")
	if !ok || !ok2 {
		return
	}
	for _, up := range ts.c.upstreams {
		if up.name == host {
			ts.mem.remove(tagKey{up.key, repo, tag})
		}
	}
}

// dropDigests forgets the tags of manifests evicted from the store.
func (ts *tagStore) dropDigests(ds []digest.Digest) {
	set := map[digest.Digest]bool{}
	for _, d := range ds {
		set[d] = true
	}
	ts.mem.removeIf(func(_ tagKey, e tagEntry) bool { return set[e.desc.Digest] })
	ts.mu.Lock()
	for d := range set {
		ts.dropped[d] = true
	}
	ts.mu.Unlock()
	ts.changed()
}

func (ts *tagStore) changed() {
	ts.dirty.Store(true)
	select {
	case ts.kick <- struct{}{}:
	default:
	}
}

// writer rewrites index.json after changes, until the cache closes.
func (ts *tagStore) writer(ctx context.Context) {
	defer close(ts.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ts.kick:
		}
		t := time.NewTimer(tagWriteDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := ts.write(context.Background()); err != nil {
			ts.c.log.Warn("recording tags failed", "cause", safe(err.Error()))
		}
	}
}

// close waits for the writer to stop and writes what is pending.
func (ts *tagStore) close() error {
	<-ts.done
	if ts.dirty.Load() {
		return ts.write(context.Background())
	}
	return nil
}

// write records the tags in memory whose manifests are stored in
// index.json, replacing entries of the same names. Entries of the names
// the cache manages ("<registry>/<repository>:<tag>" of a configured
// upstream) that another process sharing the store wrote stay, unless the
// tag went upstream or its manifest is no longer stored; at most MaxTags
// managed entries are kept. Other entries stay as they are.
func (ts *tagStore) write(ctx context.Context) error {
	ts.dirty.Store(false)
	names := map[string]v1.Descriptor{}
	ts.mem.mu.Lock()
	for k, el := range ts.mem.items {
		e := el.Value.(*lruEntry[tagKey, tagEntry]).val
		up := ts.c.upstreams[k.up]
		if up == nil {
			continue
		}
		names[up.name+"/"+k.repo+":"+k.tag] = e.desc
	}
	ts.mem.mu.Unlock()
	ts.mu.Lock()
	dropped, removed := ts.dropped, ts.removed
	ts.dropped, ts.removed = map[digest.Digest]bool{}, map[string]bool{}
	ts.mu.Unlock()
	pending := false
	for name, desc := range names {
		if !ts.complete(ctx, desc.Digest, 0) {
			// Not (yet) whole in the store: a layout naming it would
			// claim what it lacks. Recorded once its manifests are.
			delete(names, name)
			pending = true
		}
	}
	ts.pending.Store(pending)
	managed := func(name string) bool {
		host, _, ok := strings.Cut(name, "/")
		if !ok {
			return false
		}
		for _, up := range ts.c.upstreams {
			if up.name == host {
				return true
			}
		}
		return false
	}
	return ts.c.store.UpdateIndex(ctx, func(idx *v1.Index) error {
		kept := idx.Manifests[:0]
		others := 0
		for _, d := range idx.Manifests {
			name := d.Annotations[v1.AnnotationRefName]
			if dropped[d.Digest] {
				continue
			}
			if managed(name) {
				if _, ours := names[name]; ours || removed[name] || others >= ts.c.cfg.MaxTags-len(names) {
					continue
				}
				if _, err := ts.c.store.StatBlob(ctx, d.Digest); err != nil {
					continue
				}
				others++
			}
			kept = append(kept, d)
		}
		sorted := make([]string, 0, len(names))
		for name := range names {
			sorted = append(sorted, name)
		}
		sort.Strings(sorted)
		for _, name := range sorted {
			desc := names[name]
			desc.Annotations = map[string]string{v1.AnnotationRefName: name}
			kept = append(kept, desc)
		}
		idx.Manifests = kept
		return nil
	})
}

// complete reports whether the manifest d and every manifest under it
// (an index's children, to 8 levels) are stored and verify: what a tool
// reading the layout loads when it opens the tag. Blobs are not required
// (they are fetched again on demand).
func (ts *tagStore) complete(ctx context.Context, d digest.Digest, depth int) bool {
	if depth > 8 {
		return false
	}
	raw, err := ts.c.store.Manifest(ctx, v1.Descriptor{Digest: d})
	if err != nil {
		return false
	}
	mt, _, _ := ts.c.mediaTypes.get(d)
	ref, err := oci.NewRef(nil, raw, mt, d)
	if err != nil {
		return false
	}
	if idx, ok := ref.(*oci.Index); ok {
		for _, child := range idx.Manifests() {
			if !ts.complete(ctx, child.Digest, depth+1) {
				return false
			}
		}
	}
	return true
}

// manifestStored is told of each manifest the cache stores: tags held
// back for want of it may be recorded now.
func (ts *tagStore) manifestStored() {
	if ts.pending.Load() {
		ts.changed()
	}
}
