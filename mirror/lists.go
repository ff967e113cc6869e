package mirror

import (
	"context"
	"errors"
	"net/http"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/internal/wire"
)

// listEntry is a tag list or referrers answer, kept for ListTTL (and
// served stale after, while the upstream is down).
type listEntry struct {
	items []string
	index v1.Index
}

// maxListItems caps one kept list (tags or referrers): a list longer than
// this is passed on but not kept, so that one repository cannot fill the
// cache's memory.
const maxListItems = 100_000

// cachedList returns the answer under key: fresh, fetched anew with fetch
// (coalesced), or the last answer, marked stale, when the upstream is
// down. Kept answers live in an LRU map of MaxEntries.
func (c *Cache) cachedList(ctx context.Context, up *upstream, key string, fetch func(context.Context) (*listEntry, error)) (*listEntry, outcome, error) {
	e, age, have := c.listCache.peek(key)
	if have && age < c.cfg.ListTTL {
		c.stats.hits.Add(1)
		return e, outcome{kind: outHit}, nil
	}
	if _, _, gone := c.negative.get("l\x00" + key); gone {
		return nil, outcome{}, registry.ErrNameUnknown
	}
	staleOr := func(err error) (*listEntry, outcome, error) {
		if have && isDown(err) {
			c.stats.stale.Add(1)
			return e, outcome{outStale, err}, nil
		}
		return nil, outcome{}, err
	}
	if down, cause := up.breaker.down(); down {
		return staleOr(&errDown{cause})
	}
	got, joined, err := c.lists.do(ctx, c.ctx, key, func(ctx context.Context) (*listEntry, error) {
		ctx, cancel := context.WithTimeout(ctx, up.timeout)
		defer cancel()
		le, err := fetch(ctx)
		if err != nil {
			c.upstreamFailed(up, err)
			return nil, err
		}
		up.breaker.succeeded()
		if len(le.items)+len(le.index.Manifests) <= maxListItems {
			c.listCache.put(key, le)
		}
		return le, nil
	})
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			c.negative.put("l\x00"+key, struct{}{})
		}
		return staleOr(err)
	}
	kind := outMiss
	if joined {
		kind = outCoalesced
	}
	return got, outcome{kind: kind}, nil
}

func (c *Cache) serveTags(w *wire.Recorder, r *http.Request, t target) outcome {
	e, o, err := c.cachedList(r.Context(), t.up, "tags\x00"+t.up.key+"\x00"+t.repo, func(ctx context.Context) (*listEntry, error) {
		tags, err := t.client().Tags(ctx)
		return &listEntry{items: tags}, err
	})
	if err != nil {
		return c.fail(w, "tags", err)
	}
	if o.kind == outStale {
		w.Header()["Warning"] = []string{staleWarning}
	}
	// The list is named as the client asked for it.
	name := r.URL.Path[len("/v2/") : len(r.URL.Path)-len("/tags/list")]
	wire.ServePage(w, r, wire.Path(name, wire.Tags, ""), append([]string(nil), e.items...), func(page []string) any {
		return wire.TagList{Name: name, Tags: page}
	})
	return o
}

func (c *Cache) serveReferrers(w *wire.Recorder, r *http.Request, t target, reference string) outcome {
	if !wire.ValidDigest(reference) {
		wire.WriteError(w, http.StatusBadRequest, wire.CodeDigestInvalid, "invalid digest")
		return outcome{kind: outRefused}
	}
	filter := r.URL.Query().Get("artifactType")
	if len(filter) > 255 {
		wire.WriteError(w, http.StatusBadRequest, wire.CodeUnsupported, "artifactType too long")
		return outcome{kind: outRefused}
	}
	// Kept per subject (unfiltered) and filtered here, so that a client
	// cycling artifactType values costs one entry, not one each.
	subject := digest.Digest(reference)
	e, o, err := c.referrers(r.Context(), t, subject)
	if err != nil {
		stored, ok := c.serveStoredReferrers(r, t, subject, err)
		if !ok {
			return c.fail(w, "referrers", err)
		}
		e, o = stored, outcome{outStale, err}
	}
	if o.kind == outStale {
		w.Header()["Warning"] = []string{staleWarning}
	}
	idx := e.index
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
		idx.Manifests = nil
		for _, d := range e.index.Manifests {
			if d.ArtifactType == filter {
				idx.Manifests = append(idx.Manifests, d)
			}
		}
	}
	if idx.Manifests == nil {
		idx.Manifests = []v1.Descriptor{}
	}
	wire.WriteJSON(w, r, v1.MediaTypeImageIndex, idx)
	return o
}
