package registry

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// storeItem is one blob or manifest in the store, for eviction.
type storeItem struct {
	size     int64
	lastUsed time.Time
	inUse    int // requests serving it, fetches landing it
}

// loadStore reads what the store holds: its tags (index.json entries
// named host/repository:tag, revalidated on first use) and its blobs'
// sizes, with their modification times as last use.
func (m *Mirror) loadStore() error {
	idx, err := m.store.Index()
	if err != nil {
		return err
	}
	for _, d := range idx.Manifests {
		if name := d.Annotations[v1.AnnotationRefName]; name != "" {
			d.Annotations = nil
			m.tags[name] = &tagEntry{desc: d}
		}
	}
	dir := filepath.Dir(m.store.BlobPath(digest.FromString("")))
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil // no blobs yet
	}
	for _, e := range ents {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".partial") || oci.ValidateDigest(d) != nil {
			continue
		}
		if info, err := e.Info(); err == nil {
			m.entries[d] = &storeItem{size: info.Size(), lastUsed: info.ModTime()}
			m.size += info.Size()
		}
	}
	m.stats.storeBytes.Store(m.size)
	return nil
}

// hold marks d in use (m.mu held): not evicted until released.
func (m *Mirror) hold(d digest.Digest) {
	e := m.entries[d]
	if e == nil {
		e = &storeItem{size: -1}
		m.entries[d] = e
	}
	e.inUse++
}

// release undoes hold (m.mu held); an entry that never landed goes.
func (m *Mirror) release(d digest.Digest) {
	if e := m.entries[d]; e != nil {
		e.inUse--
		if e.inUse <= 0 && e.size < 0 {
			delete(m.entries, d)
		}
	}
}

func (m *Mirror) releaseLocked(d digest.Digest) {
	m.mu.Lock()
	m.release(d)
	m.mu.Unlock()
}

// stored records content that landed in the store.
func (m *Mirror) stored(d digest.Digest, size int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[d]
	if e == nil {
		e = &storeItem{size: -1}
		m.entries[d] = e
	}
	if e.size < 0 {
		e.size = size
		m.size += size
		m.stats.storeBytes.Store(m.size)
	}
	e.lastUsed = time.Now()
}

// touch records that d was served.
func (m *Mirror) touch(d digest.Digest) {
	m.mu.Lock()
	if e := m.entries[d]; e != nil {
		e.lastUsed = time.Now()
	}
	m.mu.Unlock()
}

// forgetStored drops d from the bookkeeping (it was removed).
func (m *Mirror) forgetStored(d digest.Digest) {
	m.mu.Lock()
	if e := m.entries[d]; e != nil && e.size >= 0 {
		m.size -= e.size
		e.size = -1
		if e.inUse <= 0 {
			delete(m.entries, d)
		}
		m.stats.storeBytes.Store(m.size)
	}
	delete(m.mediaType, d)
	m.mu.Unlock()
}

// learn records the size of a blob named by a manifest the mirror served.
func (m *Mirror) learn(d digest.Digest, size int64) {
	m.mu.Lock()
	if len(m.known) < 1<<20 {
		m.known[d] = size
	}
	m.mu.Unlock()
}

// evict removes the least recently served content not in use until the
// store is within MaxSize. A removed blob that a stored manifest needs is
// fetched again when asked for; a removed manifest a tag points at is
// fetched again by the tag's next use.
func (m *Mirror) evict() {
	if m.MaxSize <= 0 {
		return
	}
	m.mu.Lock()
	if m.size <= m.MaxSize {
		m.mu.Unlock()
		return
	}
	type cand struct {
		d    digest.Digest
		used time.Time
		size int64
	}
	var cands []cand
	for d, e := range m.entries {
		if e.inUse == 0 && e.size >= 0 {
			cands = append(cands, cand{d, e.lastUsed, e.size})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].used.Before(cands[j].used) })
	var victims []digest.Digest
	over := m.size - m.MaxSize
	for _, c := range cands {
		if over <= 0 {
			break
		}
		victims = append(victims, c.d)
		m.entries[c.d].inUse++ // held while removed
		over -= c.size
	}
	m.mu.Unlock()
	for _, d := range victims {
		if err := os.Remove(m.store.BlobPath(d)); err == nil || os.IsNotExist(err) {
			m.stats.evictions.Add(1)
		}
		m.mu.Lock()
		m.release(d)
		m.mu.Unlock()
		m.forgetStored(d)
	}
}

// storeManifest lands manifest bytes (already verified) in the store.
func (m *Mirror) storeManifest(ctx context.Context, desc v1.Descriptor, raw []byte) error {
	desc.Data = raw
	if err := m.store.WriteBlob(ctx, nil, desc, nil); err != nil {
		return err
	}
	m.stored(desc.Digest, desc.Size)
	m.mu.Lock()
	m.mediaType[desc.Digest] = desc.MediaType
	m.mu.Unlock()
	return nil
}

// storedManifest reads a manifest from the store, verified (parsing it
// checks its digest); ok is false when the store does not hold it.
func (m *Mirror) storedManifest(ctx context.Context, d digest.Digest) (oci.Ref, bool) {
	m.mu.Lock()
	mt := m.mediaType[d]
	m.mu.Unlock()
	raw, err := m.store.Manifest(ctx, v1.Descriptor{Digest: d})
	if err != nil {
		return nil, false
	}
	ref, err := oci.NewRef(nil, raw, mt, d)
	if err != nil {
		// Not what its name says: drop it, fetch it again.
		os.Remove(m.store.BlobPath(d))
		m.forgetStored(d)
		return nil, false
	}
	m.mu.Lock()
	m.mediaType[d] = ref.Descriptor().MediaType
	m.mu.Unlock()
	m.touch(d)
	return ref, true
}
