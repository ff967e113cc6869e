package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// stallMinBytes and stallMinRate set the least a body must deliver per
// stall window (StallTimeout): the larger of 1 KiB and 8 KiB for each
// second of the window, 240 KiB per 30 s at the defaults. A server that
// drips bytes counts as stalled instead of holding a reader for days (at
// 1 KiB per window a 4 MiB manifest would take 33 hours); 8 KiB/s is far
// below any link a pull can use.
const (
	stallMinBytes = 1 << 10
	stallMinRate  = 8 << 10
)

// stallThreshold is the bytes a body must deliver per window d.
func stallThreshold(d time.Duration) int {
	n := int(d.Seconds() * stallMinRate)
	return max(n, stallMinBytes)
}

// defaultBackOff is the policy documented on Registry.GetBackOff.
func defaultBackOff() backoff.BackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     250 * time.Millisecond,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         8 * time.Second,
		MaxElapsedTime:      60 * time.Second,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	return backoff.WithMaxRetries(b, 5)
}

// retry runs op until it succeeds, fails permanently, or the policy b or
// the context's deadline ends it. It is the one retry loop of the client;
// nothing under op retries on its own (a token fetch is part of the
// attempt that needs it):
//   - an error wrapped in backoff.Permanent ends it at once (unwrapped);
//   - a *ClientError that is not Temporary ends it;
//   - a Retry-After longer than the policy's wait replaces it, and one
//     longer than MaxRetryAfter ends it;
//   - a wait that would pass the context's deadline ends it with the last
//     error, not with a deadline error.
//
// bo holds the operation's policy; a nil *bo is filled in with a fresh one
// at the first failure, so an operation that succeeds at once makes none.
func (t *transport) retry(ctx context.Context, bo *backoff.BackOff, op func() error) error {
	for {
		err := op()
		if err == nil {
			return nil
		}
		if *bo == nil {
			*bo = t.newBackOff()
			if t.mirror {
				// A mirror's failure falls through to the next endpoint.
				*bo = &backoff.StopBackOff{}
			}
		}
		wait, ok := t.nextWait(ctx, *bo, err)
		if !ok {
			return unwrapPermanent(err)
		}
		if t.notify != nil {
			t.notify(err, wait)
		}
		if serr := sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w (while waiting to retry after: %v)", serr, err)
		}
	}
}

// nextWait decides whether err is retried and after how long.
func (t *transport) nextWait(ctx context.Context, b backoff.BackOff, err error) (time.Duration, bool) {
	var perm *backoff.PermanentError
	if errors.As(err, &perm) || ctx.Err() != nil {
		return 0, false
	}
	var ce *ClientError
	if errors.As(err, &ce) && !ce.Temporary() {
		return 0, false
	}
	wait := b.NextBackOff()
	if wait == backoff.Stop {
		return 0, false
	}
	if ce != nil && ce.RetryAfter > 0 {
		if ce.RetryAfter > t.maxRetryAfter {
			return 0, false
		}
		wait = max(wait, ce.RetryAfter)
	}
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
		return 0, false
	}
	return wait, true
}

func unwrapPermanent(err error) error {
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		return perm.Err
	}
	return err
}

// watchdog cancels a request when no progress is seen for d: its
// transport's stallWatch looks at last, the time of the latest progress.
type watchdog struct {
	d       time.Duration
	cancel  context.CancelFunc
	watch   *stallWatch
	last    atomic.Int64 // UnixNano of the latest progress
	mu      sync.Mutex
	stopped bool
	didFire atomic.Bool
}

func (w *watchdog) fire() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.didFire.Store(true)
	w.cancel()
}

func (w *watchdog) fired() bool { return w != nil && w.didFire.Load() }

// kick records progress: the stall window starts again now.
func (w *watchdog) kick() {
	if w == nil {
		return
	}
	w.last.Store(time.Now().UnixNano())
}

// stop disarms the watchdog.
func (w *watchdog) stop() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.watch.remove(w)
}

// release disarms the watchdog and cancels its context: for a request
// that produced no body to watch.
func (w *watchdog) release() {
	if w == nil {
		return
	}
	w.stop()
	w.cancel()
}

// watchedBody is a response body under a watchdog: every stallThreshold
// bytes read rearm it, and a read cut short by the watchdog reports ErrStalled.
type watchedBody struct {
	rc    io.ReadCloser
	wd    *watchdog
	since int // bytes read since the watchdog was last rearmed
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if b.since += n; b.since >= stallThreshold(b.wd.d) {
		b.wd.kick()
		b.since = 0
	}
	if err != nil && err != io.EOF && b.wd.fired() {
		err = fmt.Errorf("less than %d bytes in %s: %w", stallThreshold(b.wd.d), b.wd.d, ErrStalled)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.wd.stop()
	err := b.rc.Close()
	b.wd.cancel()
	return err
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
