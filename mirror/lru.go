package mirror

import (
	"container/list"
	"sync"
	"time"
)

// lru is a map with a cap: adding past the cap drops the least recently
// used entry, and entries older than ttl (when positive) are misses. It
// is safe for concurrent use. Every piece of per-request state the cache
// keeps lives in one, so that no request can grow memory without bound.
type lru[K comparable, V any] struct {
	mu    sync.Mutex
	cap   int
	ttl   time.Duration
	order *list.List // of *lruEntry, most recent first
	items map[K]*list.Element
	now   func() time.Time
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
	at  time.Time
}

func newLRU[K comparable, V any](capacity int, ttl time.Duration) *lru[K, V] {
	return &lru[K, V]{cap: max(capacity, 1), ttl: ttl, order: list.New(), items: map[K]*list.Element{}, now: time.Now}
}

// get returns the value under k and how long ago it was put; expired
// entries are dropped and missed.
func (c *lru[K, V]) get(k K) (v V, age time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.items[k]
	if el == nil {
		return v, 0, false
	}
	e := el.Value.(*lruEntry[K, V])
	age = c.now().Sub(e.at)
	if c.ttl > 0 && age >= c.ttl {
		c.order.Remove(el)
		delete(c.items, k)
		return v, 0, false
	}
	c.order.MoveToFront(el)
	return e.val, age, true
}

// peek is get without expiry: stale entries are returned with their age.
func (c *lru[K, V]) peek(k K) (v V, age time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.items[k]
	if el == nil {
		return v, 0, false
	}
	e := el.Value.(*lruEntry[K, V])
	return e.val, c.now().Sub(e.at), true
}

// put stores v under k, dropping the least recently used entry when full.
func (c *lru[K, V]) put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.items[k]; el != nil {
		e := el.Value.(*lruEntry[K, V])
		e.val, e.at = v, c.now()
		c.order.MoveToFront(el)
		return
	}
	c.items[k] = c.order.PushFront(&lruEntry[K, V]{key: k, val: v, at: c.now()})
	for len(c.items) > c.cap {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*lruEntry[K, V]).key)
	}
}

// remove drops k.
func (c *lru[K, V]) remove(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.items[k]; el != nil {
		c.order.Remove(el)
		delete(c.items, k)
	}
}

// removeIf drops every entry fn selects.
func (c *lru[K, V]) removeIf(fn func(K, V) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, el := range c.items {
		if fn(k, el.Value.(*lruEntry[K, V]).val) {
			c.order.Remove(el)
			delete(c.items, k)
		}
	}
}

// len is the number of entries (expired ones included until looked at).
func (c *lru[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}
