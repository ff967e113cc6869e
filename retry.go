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

// stallMinBytes is the least a body must deliver per StallTimeout: a
// server that drips a few bytes at a time counts as stalled too, instead of
// holding a reader for days. (1 KiB per 30 s is 34 bytes/s, far below any
// usable link.)
const stallMinBytes = 1 << 10

// defaultBackOff is the policy documented on Client.GetBackOff.
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

func (c *Client) newBackOff() backoff.BackOff {
	if c.GetBackOff != nil {
		if b := c.GetBackOff(); b != nil {
			b.Reset()
			return b
		}
	}
	return defaultBackOff()
}

// retry runs op until it succeeds, fails permanently, or the policy or the
// context's deadline ends it. It is the one retry loop of the client:
//   - an error wrapped in backoff.Permanent ends it at once (unwrapped);
//   - a *ClientError that is not Temporary ends it;
//   - a Retry-After longer than the policy's wait replaces it, and one
//     longer than MaxRetryAfter ends it;
//   - a wait that would pass the context's deadline ends it with the last
//     error, not with a deadline error.
func (c *Client) retry(ctx context.Context, op func() error) error {
	b := c.newBackOff()
	return c.retryWith(ctx, b, op)
}

func (c *Client) retryWith(ctx context.Context, b backoff.BackOff, op func() error) error {
	for {
		err := op()
		if err == nil {
			return nil
		}
		wait, ok := c.nextWait(ctx, b, err)
		if !ok {
			return unwrapPermanent(err)
		}
		if c.RetryNotify != nil {
			c.RetryNotify(err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (while waiting to retry after: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// nextWait decides whether err is retried and after how long.
func (c *Client) nextWait(ctx context.Context, b backoff.BackOff, err error) (time.Duration, bool) {
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
		max := c.MaxRetryAfter
		if max == 0 {
			max = defaultMaxRetryAfter
		}
		if ce.RetryAfter > max {
			return 0, false
		}
		if ce.RetryAfter > wait {
			wait = ce.RetryAfter
		}
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

// watchdog cancels a request when no progress is seen for d.
type watchdog struct {
	d       time.Duration
	cancel  context.CancelFunc
	timer   *time.Timer
	mu      sync.Mutex
	stopped bool
	didFire atomic.Bool
}

func (w *watchdog) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.didFire.Store(true)
	w.cancel()
}

func (w *watchdog) fired() bool { return w.didFire.Load() }

func (w *watchdog) kick() {
	w.mu.Lock()
	if !w.stopped {
		w.timer.Reset(w.d)
	}
	w.mu.Unlock()
}

func (w *watchdog) stop() {
	w.mu.Lock()
	w.stopped = true
	w.timer.Stop()
	w.mu.Unlock()
}

// watchedBody is a response body under a watchdog: every stallMinBytes
// read rearms it, and a read cut short by the watchdog reports ErrStalled.
type watchedBody struct {
	rc    io.ReadCloser
	wd    *watchdog
	since int // bytes read since the watchdog was last rearmed
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if b.since += n; b.since >= stallMinBytes {
		b.wd.kick()
		b.since = 0
	}
	if err != nil && err != io.EOF && b.wd.fired() {
		err = fmt.Errorf("less than %d bytes in %s: %w", stallMinBytes, b.wd.d, ErrStalled)
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
