package mirror

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// flights are the blob fetches running upstream, keyed by what they
// fetch for whom (upstream, repository, digest): a request joins the
// fetch of its own repository only, so a request through a repository
// that lacks a blob can fail only its own fetch. Their number is capped
// overall (MaxFetches) and per client address (MaxFetchesPerClient); the
// maps hold only fetches in flight and the addresses that started them.
type flights struct {
	mu        sync.Mutex
	running   map[blobKey]*flight
	perClient map[string]int
	slots     chan struct{}
	maxClient int
	wg        sync.WaitGroup
}

var (
	// errBusy: MaxFetches fetches run already (503, retry soon).
	errBusy = errors.New("too many upstream fetches in flight")
	// errClientBusy: this client started MaxFetchesPerClient already (429).
	errClientBusy = errors.New("too many upstream fetches started by this client")
	// errLanded: the flight ended with the blob stored; serve it from there.
	errLanded = errors.New("landed")
)

func (fs *flights) init(max, perClient int) {
	fs.running = map[blobKey]*flight{}
	fs.perClient = map[string]int{}
	fs.slots = make(chan struct{}, max)
	fs.maxClient = perClient
}

// wait waits for every flight to end (after the cache's context ended).
func (fs *flights) wait() { fs.wg.Wait() }

// flight is one upstream fetch of a blob into the store, followed by
// every request for it while it runs.
type flight struct {
	key    blobKey
	desc   v1.Descriptor
	client string
	cancel context.CancelFunc
	grace  time.Duration

	mu        sync.Mutex
	landed    int64         // bytes in the landing, in order
	started   bool          // our landing holds the store's landing file
	done      bool          // the fetch ended: err says how
	err       error         // nil: verified and stored
	changed   chan struct{} // closed and replaced on every change
	followers int
	idle      *time.Timer
	abandoned bool     // cancelled for want of followers; out of fs.running
	fs        *flights // the flights it runs among
	// win holds the landing's newest bytes for followers (see window.go);
	// noWin: none was free, the followers read the file.
	win   *window
	noWin bool
}

// flightState is a snapshot of a flight.
type flightState struct {
	landed        int64
	started, done bool
	err           error
	changed       <-chan struct{}
}

func (f *flight) state() flightState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return flightState{f.landed, f.started, f.done, f.err, f.changed}
}

// update changes the flight and wakes its followers.
func (f *flight) update(fn func()) {
	f.mu.Lock()
	fn()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// leave is called by each follower when it stops following; the last one
// out starts the grace period after which the fetch is cancelled, or
// returns the window of a fetch that ended.
func (f *flight) leave(ws *windows) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.followers--
	f.releaseWindow(ws)
	if f.followers == 0 && !f.done {
		f.idle = time.AfterFunc(f.grace, f.abandonIfIdle)
	}
}

// abandonIfIdle cancels the fetch when nobody follows it still. It is
// taken out of the running flights at once, under their lock, so that a
// request arriving while it winds down starts a fetch of its own (which
// resumes the landing once this one let go of it) instead of joining one
// that will fail and cut its response.
func (f *flight) abandonIfIdle() {
	fs := f.fs
	fs.mu.Lock()
	f.mu.Lock()
	abandon := f.followers == 0 && !f.done && !f.abandoned
	if abandon {
		f.abandoned = true
		if fs.running[f.key] == f {
			delete(fs.running, f.key)
		}
	}
	f.mu.Unlock()
	fs.mu.Unlock()
	if abandon {
		f.cancel()
	}
}

// keep records bytes the landing reported in the flight's window, taking
// one from ws for a large blob at its first bytes. Called under f.mu.
func (f *flight) keep(ws *windows, p []byte, end int64) {
	if p == nil || f.noWin || f.desc.Size < windowMinSize {
		return
	}
	if f.win == nil {
		if f.win = ws.take(); f.win == nil {
			f.noWin = true
			return
		}
	}
	f.win.add(p, end)
}

// releaseWindow returns the window to ws once the fetch ended and no
// follower is left to read it. Called under f.mu.
func (f *flight) releaseWindow(ws *windows) {
	if f.win != nil && f.done && f.followers == 0 {
		ws.give(f.win)
		f.win = nil
	}
}

// copyFromWindow copies into dst the landed bytes from off that the
// window holds; 0 when it holds none of them.
func (f *flight) copyFromWindow(dst []byte, off int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.win == nil {
		return 0
	}
	return f.win.copyAt(dst, off)
}

// join adds a follower to a running flight, unless it was abandoned.
// Called under the flights' lock.
func (f *flight) join() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.abandoned {
		return false
	}
	f.followers++
	if f.idle != nil {
		f.idle.Stop()
		f.idle = nil
	}
	return true
}

// startFlight returns the flight fetching desc for t, starting it when
// none runs (joined false) unless a cap refuses. The caller follows it
// and must call leave when done.
func (c *Cache) startFlight(t target, desc v1.Descriptor, client string) (f *flight, joined bool, err error) {
	fs := &c.flights
	k := t.blob(desc.Digest)
	fs.mu.Lock()
	if f := fs.running[k]; f != nil && f.join() {
		fs.mu.Unlock()
		c.stats.coalesced.Add(1)
		return f, true, nil
	}
	if fs.perClient[client] >= fs.maxClient {
		fs.mu.Unlock()
		return nil, false, errClientBusy
	}
	select {
	case fs.slots <- struct{}{}:
	default:
		fs.mu.Unlock()
		return nil, false, errBusy
	}
	ctx, cancel := context.WithCancel(c.ctx)
	f = &flight{key: k, desc: desc, client: client, cancel: cancel, grace: c.cfg.AbandonAfter,
		changed: make(chan struct{}), followers: 1, fs: fs}
	fs.running[k] = f
	fs.perClient[client]++
	fs.wg.Add(1)
	fs.mu.Unlock()
	c.stats.misses.Add(1)
	c.acct.hold(desc.Digest)
	go c.runFlight(ctx, t, f)
	return f, false, nil
}

// runFlight lands the blob and ends the flight. A panic fails this flight
// only.
func (c *Cache) runFlight(ctx context.Context, t target, f *flight) {
	var err error
	defer func() {
		if p := recover(); p != nil {
			c.stats.panics.Add(1)
			c.log.Error("panic in a blob fetch", "upstream", t.up.name, "repository", t.repo,
				"digest", string(f.desc.Digest), "panic", safe(fmt.Sprint(p)), "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error while fetching")
		}
		fs := &c.flights
		fs.mu.Lock()
		if fs.running[f.key] == f { // not when abandoned and replaced
			delete(fs.running, f.key)
		}
		if fs.perClient[f.client]--; fs.perClient[f.client] <= 0 {
			delete(fs.perClient, f.client)
		}
		fs.mu.Unlock()
		<-fs.slots
		c.acct.release(f.desc.Digest)
		f.update(func() {
			f.done, f.err = true, err
			if f.idle != nil {
				f.idle.Stop()
			}
			f.releaseWindow(&c.windows)
		})
		f.cancel()
		fs.wg.Done()
	}()
	err = c.land(ctx, t, f)
}

// land fetches f's blob into the store. On a full disk it makes room and
// tries once more.
func (c *Cache) land(ctx context.Context, t target, f *flight) error {
	desc := f.desc
	c.acct.reserve(ctx, desc.Size)
	progress := func(p oci.BlobProgress) {
		if p.Waiting {
			return
		}
		f.update(func() {
			f.started = true
			f.landed = max(f.landed, p.Complete)
			f.keep(&c.windows, p.Landed, p.Complete)
		})
	}
	src := t.client().Source()
	err := c.store.WriteBlob(ctx, src, desc, progress)
	if errors.Is(err, syscall.ENOSPC) && ctx.Err() == nil {
		c.log.Warn("store full while landing; evicting and trying again", "digest", string(desc.Digest))
		c.acct.evict(ctx, desc.Size)
		err = c.store.WriteBlob(ctx, src, desc, progress)
	}
	switch {
	case err == nil:
		c.acct.landed(desc.Digest, desc.Size, desc.Size)
		c.trust.add(f.key)
		t.up.breaker.succeeded()
		if c.cfg.MaxSize > 0 {
			// From a fresh listing of the store: other processes
			// sharing it land content this one has not counted.
			c.acct.evict(ctx, 0)
		}
		return nil
	case errors.Is(err, oci.ErrDigestMismatch) || errors.Is(err, oci.ErrSizeMismatch):
		c.stats.verifyFailures.Add(1)
	}
	c.acct.unreserve(desc.Size)
	c.upstreamFailed(t.up, err)
	c.log.Warn("blob fetch failed", "upstream", t.up.name, "repository", t.repo, "digest", string(desc.Digest),
		"cause", safe(err.Error()))
	return err
}
