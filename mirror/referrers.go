package mirror

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// Referrers answers are kept with the content they list, as the
// distribution spec's referrers tag schema keeps them: an image index,
// stored as a manifest, tagged "<algorithm>-<encoded>" of the subject in
// the repository. The tag goes into index.json with the cache's other
// tags, so the answer survives a restart and is served, marked stale,
// while the upstream is down; a later upstream answer replaces it. The
// index is evicted like any manifest, and its tag with it.

// referrers is t's referrers answer for subject d: kept, fetched upstream
// (coalesced) and stored with persistReferrers, or stale (see cachedList).
func (c *Cache) referrers(ctx context.Context, t target, d digest.Digest) (*listEntry, outcome, error) {
	key := "referrers\x00" + t.up.key + "\x00" + t.repo + "\x00" + string(d)
	return c.cachedList(ctx, t.up, key, func(ctx context.Context) (*listEntry, error) {
		ds, err := t.client().Referrers(ctx, d, "")
		if err != nil {
			return nil, err
		}
		le := &listEntry{index: oci.ReferrersIndex(ds)}
		c.persistReferrers(ctx, t, d, le.index)
		return le, nil
	})
}

// persistReferrers stores idx, the upstream's referrers answer for t's
// subject d, and records its tag. A failure is logged: the answer is
// served all the same, and kept in memory.
func (c *Cache) persistReferrers(ctx context.Context, t target, d digest.Digest, idx v1.Index) {
	raw, err := json.Marshal(idx)
	if err != nil || len(raw) > oci.MaxManifestSize {
		return
	}
	desc := v1.Descriptor{MediaType: v1.MediaTypeImageIndex, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if e, ok := c.tags.get(tagKey{t.up.key, t.repo, oci.ReferrersTag(d)}); ok && e.desc.Digest == desc.Digest {
		c.tags.set(tagKey{t.up.key, t.repo, oci.ReferrersTag(d)}, desc, false)
		return
	}
	stored := desc
	stored.Data = raw
	if err := c.store.WriteBlob(ctx, nil, stored, nil); err != nil {
		c.log.Warn("storing a referrers list failed", "subject", string(d), "cause", safe(err.Error()))
		return
	}
	c.acct.landed(desc.Digest, desc.Size, 0)
	c.trust.add(t.blob(desc.Digest))
	c.tags.set(tagKey{t.up.key, t.repo, oci.ReferrersTag(d)}, desc, true)
	c.tags.manifestStored()
}

// storedReferrers is the referrers answer for t's subject d that the
// store keeps, verified against its digest; ok is false when there is
// none or it does not verify.
func (c *Cache) storedReferrers(ctx context.Context, t target, d digest.Digest) (*listEntry, bool) {
	e, ok := c.tags.get(tagKey{t.up.key, t.repo, oci.ReferrersTag(d)})
	if !ok {
		return nil, false
	}
	m, _, ok := c.storedManifest(ctx, e.desc.Digest)
	if !ok {
		return nil, false
	}
	var idx v1.Index
	if json.Unmarshal(m.raw, &idx) != nil || idx.MediaType != v1.MediaTypeImageIndex {
		return nil, false
	}
	// The upstream listed these in this repository.
	c.trust.nameAll(t.up.key, t.repo, idx.Manifests)
	return &listEntry{index: idx}, true
}

// serveStoredReferrers answers from the stored list when the upstream
// cannot (err says it is down); false when there is nothing to answer
// with.
func (c *Cache) serveStoredReferrers(r *http.Request, t target, d digest.Digest, err error) (*listEntry, bool) {
	if !isDown(err) {
		return nil, false
	}
	e, ok := c.storedReferrers(r.Context(), t, d)
	if !ok {
		return nil, false
	}
	c.stats.stale.Add(1)
	return e, true
}
