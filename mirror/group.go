package mirror

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
)

// group runs one call per key at a time: callers asking for a key while
// its call runs wait for that call's result instead of starting another.
// The call runs under the context given to the group (the cache's
// lifetime, bounded by the call's own timeout), not a caller's, so one
// caller leaving does not fail the others. A panic in a call is recovered
// and becomes that call's error: it fails that call's callers only.
// The map holds only calls in flight; it is bounded by the requests
// being served.
type group[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*groupCall[V]
}

type groupCall[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// errPanic wraps a recovered panic.
type errPanic struct {
	val   any
	stack []byte
}

func (e *errPanic) Error() string { return fmt.Sprintf("internal error: %v", e.val) }

// do returns fn's result for key, running fn unless a call for key runs
// already; joined reports that it did. A caller whose ctx ends stops
// waiting (the call goes on for the others).
func (g *group[K, V]) do(ctx context.Context, base context.Context, key K, fn func(context.Context) (V, error)) (v V, joined bool, err error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[K]*groupCall[V]{}
	}
	if c := g.calls[key]; c != nil {
		g.mu.Unlock()
		select {
		case <-c.done:
			return c.val, true, c.err
		case <-ctx.Done():
			return v, true, ctx.Err()
		}
	}
	c := &groupCall[V]{done: make(chan struct{})}
	g.calls[key] = c
	g.mu.Unlock()
	go func() {
		defer func() {
			if p := recover(); p != nil {
				c.err = &errPanic{val: p, stack: debug.Stack()}
			}
			g.mu.Lock()
			delete(g.calls, key)
			g.mu.Unlock()
			close(c.done)
		}()
		c.val, c.err = fn(base)
	}()
	select {
	case <-c.done:
		return c.val, false, c.err
	case <-ctx.Done():
		return v, false, ctx.Err()
	}
}
