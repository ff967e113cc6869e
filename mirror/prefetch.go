package mirror

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/opencontainers/go-digest"
)

// maxPrefetches bounds the referrers prefetches running at once; a
// manifest fetched while that many run is not prefetched for (a client
// asking for its referrers later fetches them then).
const maxPrefetches = 4

// maxPrefetchedReferrers bounds the referrer manifests one prefetch
// fetches; the list itself is kept whole.
const maxPrefetchedReferrers = 64

// prefetchReferrers fetches, in the background, the referrers of
// manifest d just fetched upstream for t, each referrer manifest, and
// stores the list (Config.PrefetchReferrers). Referrers of referrers are
// not followed. It runs under the cache's lifetime, not the request's.
func (c *Cache) prefetchReferrers(t target, d digest.Digest) {
	select {
	case c.prefetching <- struct{}{}:
	default:
		return
	}
	c.flights.wg.Add(1)
	go func() {
		defer c.flights.wg.Done()
		defer func() { <-c.prefetching }()
		defer func() {
			if p := recover(); p != nil {
				c.stats.panics.Add(1)
				c.log.Error("panic in a referrers prefetch", "upstream", t.up.name, "repository", t.repo,
					"digest", string(d), "panic", safe(fmt.Sprint(p)), "stack", string(debug.Stack()))
			}
		}()
		ctx, cancel := context.WithTimeout(c.ctx, 4*t.up.timeout)
		defer cancel()
		le, _, err := c.referrers(ctx, t, d)
		if err != nil {
			c.log.Debug("referrers prefetch failed", "upstream", t.up.name, "repository", t.repo, "digest", string(d), "cause", safe(err.Error()))
			return
		}
		for i, r := range le.index.Manifests {
			if i == maxPrefetchedReferrers {
				break
			}
			if r.Digest.Validate() != nil {
				continue
			}
			if _, _, err := c.manifestByDigest(ctx, t, r.Digest); err != nil {
				c.log.Debug("referrer prefetch failed", "upstream", t.up.name, "repository", t.repo, "digest", string(r.Digest), "cause", safe(err.Error()))
				return
			}
		}
	}()
}
