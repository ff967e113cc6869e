package registry

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Parallel ranged fetch of one large blob, for links that cap each
// connection (object stores and CDNs do; their guidance is parallel
// byte-range GETs). It is used only where it pays:
//
//   - the blob has at least rangedMinSize bytes left and the client may
//     open more than one connection (RangeParallelism and MaxConnsPerHost
//     above 1);
//   - it starts as one stream bounded at rangedChunk bytes, and measures
//     the link, not the reader: the rate is the bytes over the time spent
//     waiting for them inside Read, so a reader slowed by a busy CPU (its
//     socket buffer full, every Read answered at once) does not look like
//     a slow link. After probeBytes and probeTime of waiting, a stream
//     that ran at fastStream or more stays alone (on a fast link, ranges
//     would only add requests): at its bound it goes on as one unbounded
//     request;
//   - on a slower one, the rest after the first stream's bound is fetched
//     in chunks of rangedChunk bytes, at most RangeParallelism in flight
//     (plus preopened sent ahead, where MaxConnsPerHost leaves room), each
//     a bounded Range request on a kept-alive connection, retried and
//     resumed on its own — after a trial: one chunk runs beside the first
//     stream, and only if the two bring at least trialGain times what one
//     stream did, the first keeping trialKeep of its pace (the link caps
//     each connection), do the lanes open; else
//     (a link that is simply slow, or a sender short of CPU, gets nothing
//     from more connections) the chunk is read and one stream fetches the
//     rest.
//     The first stream finishes its bounded range either way, so nothing
//     already sent is discarded;
//   - chunks are delivered to the reader in order, so the digest is
//     verified as the bytes stream, exactly as for one stream, and a
//     layout's .partial keeps a contiguous prefix;
//   - a registry that answers a bounded range with the whole blob or a
//     wrong Content-Range gets one stream again from where the reader is,
//     not an error.
//
// Memory: the chunk buffers are a budget of the client's, shared by all
// its ranged fetches: RangeParallelism × rangedChunk (8 × 8 MiB by
// default), reused. A chunk at the head of the queue without a buffer
// (the budget spent by other fetches) is read straight from its
// connection.
const (
	rangedMinSize   = 64 << 20
	rangedChunk     = 8 << 20
	trialGain       = 1.5
	trialKeep       = 0.75
	probeBytes      = 1 << 20
	probeTime       = 20 * time.Millisecond // and at least this long, for a rate worth the name
	fastStream      = 200 << 20             // bytes per second
	defaultParallel = 8
)

// rangedConfig holds the thresholds above (tests shrink them).
type rangedConfig struct {
	minSize, chunk, probe int64
	fast                  float64 // bytes per second
}

var defaultRanged = rangedConfig{minSize: rangedMinSize, chunk: rangedChunk, probe: probeBytes, fast: fastStream}

// rangedStream reads a blob as described above. Like blobStream it is
// not verifying: oci.VerifyReader wraps it.
type rangedStream struct {
	first  *blobStream // the single stream; nil once switched and drained
	ctx    context.Context
	cancel context.CancelFunc // of ctx: ends the stream and its chunks
	lanes  int
	ahead  int // chunk requests sent beyond the lanes
	cfg    rangedConfig
	desc   v1.Descriptor
	make   func(ctx context.Context, start, end int64, strict bool) *blobStream

	chunkCtx    context.Context // the chunks in flight; cancelled on a fall back
	chunkCancel context.CancelFunc

	pos         int64 // next byte to deliver (absolute)
	probeFrom   int64
	probeStart  time.Time // of the first Read
	probeMid    time.Time // when a quarter of the probe was read
	probeMidPos int64
	probeWait   time.Duration // spent inside the first stream's Read
	decided     bool          // the single stream was measured (or ranges failed)

	// The trial (see above): while trial is set one chunk runs beside the
	// first stream. The two are measured together from the moment the
	// chunk's first bytes are seen (trialStart; the first stream was then
	// at trialFrom and the chunk held trialGot), so that the chunk's round
	// trip does not count against it; singleRate is what the first stream
	// brought alone.
	trial      bool
	trialStart time.Time
	trialFrom  int64
	trialGot   int64
	singleRate float64
	active     int   // chunk lanes in use
	singleNext bool  // the trial found no gain: one stream after the chunks
	boundary   int64 // switched: the single stream stops here (0: not switched)
	next       int64 // next chunk to schedule
	queue      []*chunk
	err        error
	t          *transport // owns the chunk budget
}

// chunk is one bounded range. Its request is sent when it is scheduled;
// its body is read into a buffer the reader assigns (in chunk order, as
// buffers free up), or, at the head of the queue without one, by the
// reader straight from the connection. A request sent before a buffer is
// free waits with its body unread, so its round trip is already paid
// when the buffer comes.
type chunk struct {
	start, end int64
	bs         *blobStream   // set before opened closes
	opened     chan struct{} // the request was answered (or failed: err)
	bufCh      chan []byte   // the buffer, once assigned; closed: read directly
	buf        []byte
	direct     bool
	off        int           // delivered so far
	done       chan struct{} // buf is full (or failed: err)
	err        error

	mu     sync.Mutex
	filled int           // bytes of buf read so far
	more   chan struct{} // a token when filled grows
}

// fill reads the chunk's body into buf, publishing progress, so the
// reader can deliver the head chunk while it is still arriving.
func (c *chunk) fill() error {
	for c.filled < len(c.buf) {
		c.mu.Lock()
		from := c.filled
		c.mu.Unlock()
		n, err := c.bs.Read(c.buf[from:min(len(c.buf), from+256<<10)])
		c.mu.Lock()
		c.filled += n
		c.mu.Unlock()
		select {
		case c.more <- struct{}{}:
		default:
		}
		if err == io.EOF && c.filled == len(c.buf) {
			return nil
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// available is how many bytes of buf are filled.
func (c *chunk) available() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.filled
}

// preopened is how many chunk requests may wait for a buffer beyond the
// lanes: their round trips are paid while other chunks stream, so a lane
// that finishes a chunk starts the next at once. Measured on a link of
// 40 MB/s per connection and 50 ms of latency (BENCHMARKS.md): with 2, a
// lane paid most of a round trip per 8 MiB chunk (0.96x containerd's
// chunked fetch); with 6, 1.23x.
const preopened = 6

// Read delivers the next bytes in order.
func (r *rangedStream) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.pos >= r.desc.Size {
		return 0, io.EOF
	}
	if r.first != nil {
		return r.readFirst(p)
	}
	return r.readChunks(p)
}

// readFirst reads from the single stream: up to the boundary once
// switched, measuring it until decided.
func (r *rangedStream) readFirst(p []byte) (int, error) {
	if r.boundary > 0 && int64(len(p)) > r.boundary-r.pos {
		p = p[:r.boundary-r.pos]
	}
	var t0 time.Time
	if !r.decided {
		t0 = time.Now()
		if r.probeStart.IsZero() {
			r.probeStart = t0
		}
		if r.probeMid.IsZero() && r.pos-r.probeFrom >= r.cfg.probe/4 {
			// The connection's opening burst (what the socket held
			// before the first Read) is behind: the single stream's own
			// rate is measured from here.
			r.probeMid, r.probeMidPos = t0, r.pos
		}
	}
	n, err := r.first.Read(p)
	if !r.decided {
		r.probeWait += time.Since(t0)
	}
	r.pos += int64(n)
	if err != nil && err != io.EOF {
		r.err = err
		return n, err
	}
	bound := r.first.end > 0 && r.pos >= r.first.end
	if !r.decided && (bound || r.pos-r.probeFrom >= r.cfg.probe && r.probeWait >= probeTime) {
		r.decide()
	}
	if r.trial {
		r.judge(r.boundary > 0 && r.pos >= r.boundary)
	}
	switch {
	case r.boundary > 0 && r.pos >= r.boundary:
		r.first.Close()
		r.first = nil
		r.next = max(r.next, r.boundary)
	case bound && r.pos < r.desc.Size:
		// Fast: one stream for the rest.
		r.first.Close()
		r.first = r.make(r.ctx, r.pos, 0, false)
	}
	if n == 0 && err == io.EOF {
		return 0, io.EOF
	}
	return n, nil
}

// decide measures the single stream and switches to chunks when it is
// slow and enough is left.
func (r *rangedStream) decide() {
	r.decided = true
	rate := float64(r.pos-r.probeFrom) / max(r.probeWait.Seconds(), 1e-9)
	// A trial needs the first stream to run beside it for a while.
	if r.first.end == 0 || rate >= r.cfg.fast || r.desc.Size-r.first.end < 2*r.cfg.chunk || r.first.end-r.pos < r.cfg.probe {
		return
	}
	// The first stream finishes its bounded range while the trial chunk
	// runs.
	now := time.Now()
	from, at := r.probeFrom, r.probeStart
	if !r.probeMid.IsZero() && r.probeMidPos < r.pos {
		from, at = r.probeMidPos, r.probeMid
	}
	r.singleRate = float64(r.pos-from) / max(now.Sub(at).Seconds(), 1e-9)
	// One chunk is asked for the trial; the lanes follow its verdict.
	// (Asking them all at once saves a round trip on a capped link, but a
	// sender short of CPU — an upstream on the same machine — then gets
	// 15 connections it cannot feed: a cold pull through the cache took
	// 1.8x longer and 4.5x the CPU of one stream.)
	r.trial, r.trialStart, r.active = true, time.Time{}, 1
	r.boundary = r.first.end
	r.next = r.boundary
	r.chunkCtx, r.chunkCancel = context.WithCancel(r.ctx)
	r.schedule()
}

// judge ends the trial once the trial chunk and the first stream have
// run beside each other long enough (or, final, when the first stream
// reached its bound): with enough gain all lanes open, else the chunks
// already asked for are read and one stream fetches the rest. A trial
// that ends before the chunk brought anything is no evidence against the
// probe: the lanes open.
func (r *rangedStream) judge(final bool) {
	var got int64
	if len(r.queue) > 0 {
		got = int64(r.queue[0].available())
	}
	now := time.Now()
	if r.trialStart.IsZero() && got > 0 {
		r.trialStart, r.trialFrom, r.trialGot = now, r.pos, got
	}
	var elapsed time.Duration
	if !r.trialStart.IsZero() {
		elapsed = now.Sub(r.trialStart)
	}
	if !final && (got-r.trialGot < r.cfg.probe || elapsed < probeTime) {
		return
	}
	r.trial = false
	secs := max(elapsed.Seconds(), 1e-9)
	together := float64(r.pos-r.trialFrom+got-r.trialGot) / secs
	// On a link that caps each connection the first stream keeps its pace
	// beside the chunk; where the two share one resource (a slow link, a
	// sender short of CPU) the first slows down.
	firstKept := float64(r.pos-r.trialFrom)/secs >= trialKeep*r.singleRate
	if elapsed < probeTime || together >= trialGain*r.singleRate && firstKept {
		r.active = r.lanes
		r.schedule()
		return
	}
	r.singleNext = true
}

// schedule keeps the active lanes (plus ahead, once all are open) in
// chunk requests and hands free buffers to the earliest chunks without
// one; none after a trial without gain.
func (r *rangedStream) schedule() {
	want := r.active
	if want == r.lanes {
		want += r.ahead
	}
	for !r.singleNext && len(r.queue) < want && r.next < r.desc.Size {
		c := &chunk{start: r.next, end: min(r.next+r.cfg.chunk, r.desc.Size),
			opened: make(chan struct{}), bufCh: make(chan []byte, 1), done: make(chan struct{}), more: make(chan struct{}, 1)}
		r.next = c.end
		r.queue = append(r.queue, c)
		go r.fetch(c)
	}
	for _, c := range r.queue {
		if c.buf != nil || c.direct {
			continue
		}
		buf := r.t.getChunk(r.cfg.chunk)
		if buf == nil {
			return
		}
		c.buf = buf[:c.end-c.start]
		c.bufCh <- c.buf
	}
}

// fetch sends one chunk's request, then reads its body into the buffer
// it is given, or leaves it to the reader.
func (r *rangedStream) fetch(c *chunk) {
	c.bs = r.make(r.chunkCtx, c.start, c.end, true)
	if err := c.bs.open(); err != nil {
		c.err = err
		close(c.opened)
		close(c.done)
		c.bs.Close()
		return
	}
	close(c.opened)
	if _, ok := <-c.bufCh; !ok {
		return // the reader reads c.bs
	}
	c.err = c.fill()
	c.bs.Close()
	close(c.done)
}

// readChunks delivers from the chunk at the head of the queue.
func (r *rangedStream) readChunks(p []byte) (int, error) {
	r.schedule()
	if len(r.queue) == 0 {
		if r.singleNext && r.pos < r.desc.Size {
			// The trial found no gain: one stream for the rest.
			r.chunkCancel()
			r.boundary = 0
			r.first = r.make(r.ctx, r.pos, 0, false)
			return r.readFirst(p)
		}
		return 0, io.EOF
	}
	c := r.queue[0]
	if c.buf == nil && !c.direct {
		c.direct = true
		close(c.bufCh)
	}
	if c.direct {
		select {
		case <-c.opened:
		case <-r.ctx.Done():
			r.err = r.ctx.Err()
			return 0, r.err
		}
	} else if err := r.waitFilled(c); err != nil {
		r.err = err
		return 0, err
	}
	if failed := c.direct || isClosed(c.done); failed && c.err != nil && (c.direct || c.available() <= c.off) {
		if errors.Is(c.err, errRangeUnusable) {
			return r.fallBack(p)
		}
		r.err = c.err
		return 0, r.err
	}
	var n int
	if c.direct {
		if want := int(c.end-c.start) - c.off; len(p) > want {
			p = p[:want]
		}
		var err error
		if n, err = c.bs.Read(p); err != nil && err != io.EOF {
			r.err = err
			return n, nil
		}
	} else {
		n = copy(p, c.buf[c.off:c.available()])
	}
	c.off += n
	r.pos += int64(n)
	if c.off == int(c.end-c.start) {
		r.queue = r.queue[1:]
		if c.direct {
			c.bs.Close()
		} else {
			r.t.putChunk(c.buf)
		}
		r.schedule()
	}
	return n, nil
}

// fallBack gives up on ranges: the chunks in flight are abandoned and one
// stream continues from where the reader is.
func (r *rangedStream) fallBack(p []byte) (int, error) {
	r.chunkCancel()
	r.release()
	r.boundary, r.decided, r.trial = 0, true, false
	// The whole blob again, the prefix skipped: a registry that garbles
	// ranges cannot resume one either.
	r.first = r.make(r.ctx, r.pos, 0, false)
	r.first.noRange = true
	if err := r.first.open(); err != nil {
		r.err = err
		return 0, err
	}
	return r.readFirst(p)
}

// Close releases the connections; chunks in flight are cancelled.
// VerifyFailed is oci.VerifyReader telling the stream that its bytes did
// not verify (see blobStream.VerifyFailed).
func (r *rangedStream) VerifyFailed() { r.t.servedBad(r.desc.Digest) }

func (r *rangedStream) Close() error {
	r.cancel()
	if r.first != nil {
		r.first.Close()
	}
	r.release()
	if r.err == nil {
		r.err = errors.New("read from closed blob stream")
	}
	return nil
}

// release ends the chunks in flight (their context is cancelled first)
// and returns their buffers.
func (r *rangedStream) release() {
	for _, c := range r.queue {
		if c.buf == nil && !c.direct {
			c.direct = true
			close(c.bufCh)
		}
		<-c.opened
		if c.direct {
			if c.err == nil {
				c.bs.Close()
			}
			continue
		}
		<-c.done
		r.t.putChunk(c.buf)
	}
	r.queue = nil
}

// chunkBudget is a client's chunk buffers, shared by its ranged fetches.
type chunkBudget struct {
	mu   sync.Mutex
	free [][]byte
	made int
	max  int
}

// getChunk returns a buffer of size bytes from the budget, or nil when
// it is spent.
func (t *transport) getChunk(size int64) []byte {
	b := &t.chunks
	b.mu.Lock()
	defer b.mu.Unlock()
	for n := len(b.free); n > 0; n = len(b.free) {
		buf := b.free[n-1]
		b.free = b.free[:n-1]
		if int64(cap(buf)) >= size {
			return buf[:size]
		}
		b.made--
	}
	if b.made >= b.max {
		return nil
	}
	b.made++
	return make([]byte, size)
}

// putChunk returns a buffer to the budget.
func (t *transport) putChunk(buf []byte) {
	b := &t.chunks
	b.mu.Lock()
	b.free = append(b.free, buf[:cap(buf)])
	b.mu.Unlock()
}

// waitFilled waits until the head chunk has bytes beyond what was
// delivered, or has ended.
func (r *rangedStream) waitFilled(c *chunk) error {
	for c.available() <= c.off {
		select {
		case <-c.done:
			return nil
		default:
		}
		select {
		case <-c.more:
		case <-c.done:
			return nil
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
	}
	return nil
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
