package mirror

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// accounting keeps the store within MaxSize. It knows the size of
// everything the store holds (content and landings, as read at start and
// then as content lands), what this process is serving or landing (held:
// never evicted here), and the bytes reserved for landings under way.
// Its map has one entry per stored item, so it is bounded by the store,
// which MaxSize bounds.
//
// Eviction runs one at a time in this process, under the store's
// Exclusive lock across processes, and starts from a fresh listing of the
// store, so several processes sharing one store and cap agree on its size
// and never evict for an overflow another already cleared.
type accounting struct {
	c *Cache

	mu        sync.Mutex
	items     map[digest.Digest]*item
	stored    int   // items with a size: stored content (for /metrics, kept as they change)
	size      int64 // bytes stored, landing and reserved
	reserved  int64
	lastEvict time.Time

	evicting sync.Mutex
}

type item struct {
	size    int64
	inUse   int       // requests serving it, fetches landing it
	touched time.Time // last recorded in the store (TouchBlob)
}

func newAccounting(c *Cache) *accounting {
	return &accounting{c: c, items: map[digest.Digest]*item{}}
}

// load reads the store's sizes, landings included.
func (a *accounting) load(ctx context.Context) error {
	var size int64
	items := map[digest.Digest]*item{}
	for info, err := range a.c.store.Blobs(ctx) {
		if err != nil {
			return err
		}
		size += info.Size
		if !info.Partial {
			items[info.Digest] = &item{size: info.Size, touched: info.ModTime}
		}
	}
	a.mu.Lock()
	a.items, a.stored, a.size = items, len(items), size+a.reserved
	a.mu.Unlock()
	a.c.stats.storeBytes.Store(size)
	return nil
}

// hold marks d in use: this process does not evict it until released.
func (a *accounting) hold(d digest.Digest) {
	a.mu.Lock()
	e := a.items[d]
	if e == nil {
		e = &item{size: -1}
		a.items[d] = e
	}
	e.inUse++
	a.mu.Unlock()
}

// release undoes hold; an item that never landed goes.
func (a *accounting) release(d digest.Digest) {
	a.mu.Lock()
	if e := a.items[d]; e != nil {
		e.inUse--
		if e.inUse <= 0 && e.size < 0 {
			delete(a.items, d)
		}
	}
	a.mu.Unlock()
}

// reserve counts n bytes for a landing about to start and makes room for
// them; the landing calls landed or unreserve after.
func (a *accounting) reserve(ctx context.Context, n int64) {
	a.mu.Lock()
	a.reserved += n
	a.size += n
	over := a.c.cfg.MaxSize > 0 && a.size > a.c.cfg.MaxSize
	a.mu.Unlock()
	if over {
		a.evict(ctx, 0)
	}
}

func (a *accounting) unreserve(n int64) {
	a.mu.Lock()
	a.reserved -= n
	a.size -= n
	a.mu.Unlock()
}

// landed records content that landed (its reservation becomes its size).
func (a *accounting) landed(d digest.Digest, size, reserved int64) {
	a.mu.Lock()
	a.reserved -= reserved
	a.size -= reserved
	e := a.items[d]
	if e == nil {
		e = &item{size: -1}
		a.items[d] = e
	}
	if e.size < 0 {
		e.size = size
		a.size += size
		a.stored++
	}
	e.touched = time.Now()
	a.mu.Unlock()
	a.c.stats.storeBytes.Store(a.storedBytes())
}

func (a *accounting) storedBytes() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.size - a.reserved
}

// touch records that d (of size bytes) was served: in the store too (for
// other processes' eviction order), at most once a minute per item.
func (a *accounting) touch(ctx context.Context, d digest.Digest, size int64) {
	now := time.Now()
	a.mu.Lock()
	e := a.items[d]
	if e == nil {
		// Landed by another process sharing the store.
		e = &item{size: size}
		a.items[d] = e
		a.size += size
		a.stored++
	}
	stale := now.Sub(e.touched) > time.Minute
	if stale {
		e.touched = now
	}
	a.mu.Unlock()
	if stale {
		a.c.store.TouchBlob(ctx, d, now)
	}
}

// counts is how many stored items (blobs and manifests) the accounting
// holds: a counter kept as items change, so that a scrape of /metrics
// does not walk a map of every stored item under the lock landings take.
func (a *accounting) counts() (content int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stored
}

// forget drops d (it was removed from the store).
func (a *accounting) forget(d digest.Digest) {
	a.mu.Lock()
	if e := a.items[d]; e != nil && e.size >= 0 {
		a.size -= e.size
		e.size = -1
		a.stored--
		if e.inUse <= 0 {
			delete(a.items, d)
		}
	}
	a.mu.Unlock()
	a.c.stats.storeBytes.Store(a.storedBytes())
}

// abandonedAge is how old an abandoned landing must be before eviction
// removes it (a landing killed with its process is resumed if asked for
// within this time).
const abandonedAge = time.Hour

// evict brings the store within MaxSize, and frees at least free bytes
// more (a landing that met a full disk): abandoned landings older than
// abandonedAge go first, then the least recently used content not held
// by this process. Evicted manifests lose their tags in index.json.
func (a *accounting) evict(ctx context.Context, free int64) {
	if a.c.cfg.MaxSize <= 0 && free <= 0 {
		return
	}
	a.evicting.Lock()
	defer a.evicting.Unlock()
	err := a.c.store.Exclusive(ctx, func() error {
		type cand struct {
			d       digest.Digest
			size    int64
			used    time.Time
			partial bool
		}
		var cands []cand
		var total int64
		for info, err := range a.c.store.Blobs(ctx) {
			if err != nil {
				return err
			}
			total += info.Size
			cands = append(cands, cand{info.Digest, info.Size, info.ModTime, info.Partial})
		}
		a.mu.Lock()
		over := free
		if a.c.cfg.MaxSize > 0 {
			over = max(over, total+a.reserved-a.c.cfg.MaxSize)
		}
		held := map[digest.Digest]bool{}
		for d, e := range a.items {
			if e.inUse > 0 {
				held[d] = true
			}
		}
		a.mu.Unlock()
		if over <= 0 {
			a.resync(total)
			return nil
		}
		sort.Slice(cands, func(i, j int) bool {
			if cands[i].partial != cands[j].partial {
				return cands[i].partial
			}
			return cands[i].used.Before(cands[j].used)
		})
		var removed []digest.Digest
		for _, k := range cands {
			if over <= 0 {
				break
			}
			if k.partial {
				if ok, _ := a.c.store.RemoveAbandoned(ctx, k.d, time.Now().Add(-abandonedAge)); ok {
					over -= k.size
					total -= k.size
				}
				continue
			}
			if held[k.d] {
				continue
			}
			if err := a.c.store.RemoveBlob(ctx, k.d); err != nil {
				a.c.log.Warn("eviction failed", "digest", string(k.d), "cause", safe(err.Error()))
				continue
			}
			a.c.stats.evictions.Add(1)
			removed = append(removed, k.d)
			over -= k.size
			total -= k.size
		}
		a.mu.Lock()
		for _, d := range removed {
			if e := a.items[d]; e != nil && e.inUse <= 0 {
				if e.size >= 0 {
					a.stored--
				}
				delete(a.items, d)
			}
		}
		a.mu.Unlock()
		a.resync(total)
		if len(removed) > 0 {
			a.c.tags.dropDigests(removed)
		}
		return nil
	})
	if err != nil {
		a.c.log.Warn("eviction failed", "cause", safe(err.Error()))
	}
}

// resync sets the stored size from a fresh listing (total bytes of
// content and landings), keeping this process's reservations.
func (a *accounting) resync(total int64) {
	a.mu.Lock()
	a.size = total + a.reserved
	a.mu.Unlock()
	a.c.stats.storeBytes.Store(total)
}
