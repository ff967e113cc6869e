package mirror

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/internal/wire"
	"github.com/ocipull/registry/oci"
)

// manifestResult is a verified manifest: its bytes and descriptor.
type manifestResult struct {
	raw  []byte
	desc v1.Descriptor
}

// serveManifest answers a manifest request: by digest from the store (for
// a repository known to hold it) or one coalesced upstream fetch; by tag
// through the tag cache.
func (c *Cache) serveManifest(w *wire.Recorder, r *http.Request, t target, reference string) outcome {
	ctx := r.Context()
	var m manifestResult
	var o outcome
	var err error
	if strings.Contains(reference, ":") {
		if !wire.ValidDigest(reference) {
			wire.WriteError(w, http.StatusBadRequest, wire.CodeDigestInvalid, "invalid digest")
			return outcome{kind: outRefused}
		}
		m, o, err = c.manifestByDigest(ctx, t, digest.Digest(reference))
	} else {
		if !wire.ValidTag(reference) {
			wire.WriteError(w, http.StatusBadRequest, wire.CodeNameInvalid, "invalid tag")
			return outcome{kind: outRefused}
		}
		m, o, err = c.manifestByTag(ctx, t, reference)
	}
	if err != nil {
		return c.fail(w, "manifest", err)
	}
	if o.kind == outStale {
		w.Header()["Warning"] = []string{staleWarning}
		c.stats.stale.Add(1)
	}
	if r.Method == http.MethodGet {
		c.stats.servedBytes.Add(int64(len(m.raw)))
	}
	if o.kind == outMiss && c.cfg.PrefetchReferrers {
		c.prefetchReferrers(t, m.desc.Digest)
	}
	wire.WriteManifest(w, r, m.desc, m.raw)
	return o
}

// storedManifest reads manifest d from the store, verified (parsing it
// checks its digest). ok is false when the store does not hold it or what
// it holds under d is not a manifest (a blob: left alone, it is someone's
// layer).
func (c *Cache) storedManifest(ctx context.Context, d digest.Digest) (manifestResult, oci.Ref, bool) {
	raw, err := c.store.Manifest(ctx, v1.Descriptor{Digest: d})
	if err != nil {
		return manifestResult{}, nil, false
	}
	mt, _, _ := c.mediaTypes.get(d)
	ref, err := oci.NewRef(nil, raw, mt, d)
	if err != nil {
		return manifestResult{}, nil, false
	}
	return manifestResult{raw: raw, desc: ref.Descriptor()}, ref, true
}

// nameChildren records what a manifest fetched for t names (see trust).
func (c *Cache) nameChildren(t target, ref oci.Ref) {
	switch m := ref.(type) {
	case *oci.Image:
		c.trust.nameAll(t.up.key, t.repo, m.Blobs())
	case *oci.Index:
		c.trust.nameAll(t.up.key, t.repo, m.Manifests())
	}
}

// manifestByDigest is the manifest d for t: stored and known (or
// confirmed) for t's repository, or fetched once (coalesced) and stored.
func (c *Cache) manifestByDigest(ctx context.Context, t target, d digest.Digest) (manifestResult, outcome, error) {
	k := t.blob(d)
	if m, ref, ok := c.storedManifest(ctx, d); ok {
		stale, err := c.confirm(ctx, t, k, headManifest(d))
		if err == nil {
			c.nameChildren(t, ref)
			c.acct.touch(ctx, d, m.desc.Size)
			if stale {
				return m, outcome{kind: outStale}, nil
			}
			c.stats.hits.Add(1)
			return m, outcome{kind: outHit}, nil
		}
		if !isDown(err) {
			return m, outcome{}, err
		}
	}
	if down, cause := t.up.breaker.down(); down {
		return manifestResult{}, outcome{}, &errDown{cause}
	}
	m, joined, err := c.manifests.do(ctx, c.ctx, "m\x00"+t.up.key+"\x00"+t.repo+"\x00"+string(d), func(ctx context.Context) (manifestResult, error) {
		ctx, cancel := context.WithTimeout(ctx, t.up.timeout)
		defer cancel()
		c.stats.misses.Add(1)
		ref, err := t.client().Read(ctx, string(d))
		if err != nil {
			c.upstreamFailed(t.up, err)
			return manifestResult{}, err
		}
		t.up.breaker.succeeded()
		desc := ref.Descriptor()
		c.mediaTypes.put(d, desc.MediaType)
		c.trust.add(k)
		c.nameChildren(t, ref)
		m := manifestResult{raw: ref.RawManifest(), desc: desc}
		stored := desc
		stored.Data = m.raw
		if err := c.store.WriteBlob(ctx, nil, stored, nil); err != nil {
			// Served all the same; the next request fetches again.
			c.log.Warn("storing a manifest failed", "digest", string(d), "cause", safe(err.Error()))
		} else {
			c.acct.landed(d, desc.Size, 0)
			c.tags.manifestStored()
		}
		return m, nil
	})
	if joined {
		c.stats.coalesced.Add(1)
		return m, outcome{kind: outCoalesced}, err
	}
	return m, outcome{kind: outMiss}, err
}

// manifestByTag serves a tag: from the store while younger than its
// upstream's TagTTL (always, for a tag its ImmutableTags match);
// revalidated with one HEAD (coalesced) when older, and fetched only when
// its digest changed; stale when the upstream cannot answer; an upstream
// 404 passes through and is remembered for ListTTL.
func (c *Cache) manifestByTag(ctx context.Context, t target, tag string) (manifestResult, outcome, error) {
	tk := tagKey{t.up.key, t.repo, tag}
	e, have := c.tags.get(tk)
	if have && (!e.checked.IsZero() && time.Since(e.checked) < t.up.tagTTL || t.up.isImmutable(tag)) {
		if m, _, ok := c.storedManifest(ctx, e.desc.Digest); ok {
			c.stats.hits.Add(1)
			c.acct.touch(ctx, e.desc.Digest, m.desc.Size)
			return m, outcome{kind: outHit}, nil
		}
	}
	negKey := "t\x00" + t.up.key + "\x00" + t.repo + "\x00" + tag
	if _, _, gone := c.negative.get(negKey); gone {
		return manifestResult{}, outcome{}, registry.ErrManifestUnknown
	}
	stale := func(cause error) (manifestResult, outcome, error) {
		if have {
			if m, _, ok := c.storedManifest(ctx, e.desc.Digest); ok {
				return m, outcome{outStale, cause}, nil
			}
		}
		return manifestResult{}, outcome{}, cause
	}
	if down, cause := t.up.breaker.down(); down {
		return stale(&errDown{cause})
	}
	desc, _, err := c.manifests.do(ctx, c.ctx, "t\x00"+negKey, func(ctx context.Context) (manifestResult, error) {
		ctx, cancel := context.WithTimeout(ctx, t.up.timeout)
		defer cancel()
		desc, err := t.client().Resolve(ctx, tag)
		if err != nil {
			c.upstreamFailed(t.up, err)
			return manifestResult{}, err
		}
		t.up.breaker.succeeded()
		c.trust.add(t.blob(desc.Digest))
		c.mediaTypes.put(desc.Digest, desc.MediaType)
		// The store learns of the tag when it is new, moved, or its
		// manifest is no longer stored (purged, evicted by another process).
		_, serr := c.store.StatBlob(ctx, desc.Digest)
		c.tags.set(tk, desc, !have || e.desc.Digest != desc.Digest || serr != nil)
		return manifestResult{desc: desc}, nil
	})
	switch {
	case err == nil:
	case errors.Is(err, registry.ErrNotFound):
		c.tags.remove(tk)
		c.negative.put(negKey, struct{}{})
		return manifestResult{}, outcome{}, err
	case isDown(err):
		return stale(err)
	default:
		return manifestResult{}, outcome{}, err
	}
	return c.manifestByDigest(ctx, t, desc.desc.Digest)
}
