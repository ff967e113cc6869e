package mirror

import (
	"sync"
	"time"
)

// breaker remembers that an upstream is down. After a failure that says
// so (a refused or timed-out connection, a 5xx, a 429), the upstream is
// skipped until the back-off passes: stale tags and stored content answer
// at once, and requests the store cannot answer fail fast. The back-off
// doubles with each failure in a row, from min to max; a success resets
// it. When it has passed, requests go upstream again; the first to fail
// marks the upstream down for the next, doubled, back-off.
type breaker struct {
	min, max time.Duration
	now      func() time.Time

	mu      sync.Mutex
	until   time.Time // down until then
	backoff time.Duration
	cause   string // the last failure, for logs and readiness
}

// allow reports whether a request may go upstream now.
func (b *breaker) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.until.IsZero() || !b.now().Before(b.until)
}

// failed records a failure that means the upstream is down.
func (b *breaker) failed(cause string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.backoff == 0:
		b.backoff = b.min
	default:
		b.backoff = min(2*b.backoff, b.max)
	}
	b.until = b.now().Add(b.backoff)
	b.cause = cause
}

// succeeded records an answer: the upstream is up.
func (b *breaker) succeeded() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.until, b.backoff, b.cause = time.Time{}, 0, ""
}

// down reports whether the upstream is marked down, and why.
func (b *breaker) down() (bool, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.until.IsZero() && b.now().Before(b.until), b.cause
}
