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
//   - it starts as one stream, and measures it: after probeBytes, a
//     stream that ran at fastStream or more stays alone (on a fast link,
//     ranges would only add requests);
//   - a slower one is bounded at the next chunk boundary and the rest is
//     fetched in chunks of rangedChunk bytes, at most RangeParallelism in
//     flight, each a bounded Range request on a kept-alive connection,
//     retried and resumed on its own;
//   - chunks are delivered to the reader in order, so the digest is
//     verified as the bytes stream, exactly as for one stream, and a
//     layout's .partial keeps a contiguous prefix;
//   - a registry that answers a bounded range with the whole blob or a
//     wrong Content-Range gets one stream again from where the reader is,
//     not an error.
//
// Memory: the chunk buffers are a budget of the client's, shared by all
// its ranged fetches: RangeParallelism × rangedChunk (8 × 8 MiB by
// default), reused. A fetch that finds the budget spent reads its next
// chunk as one bounded stream, without a buffer.
const (
	rangedMinSize   = 64 << 20
	rangedChunk     = 8 << 20
	probeBytes      = 4 << 20
	fastStream      = 200 << 20 // bytes per second
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
	cfg    rangedConfig
	desc   v1.Descriptor
	make   func(ctx context.Context, start, end int64, strict bool) *blobStream

	chunkCtx    context.Context // the chunks in flight; cancelled on a fall back
	chunkCancel context.CancelFunc

	pos        int64 // next byte to deliver (absolute)
	probeFrom  int64
	probeStart time.Time
	decided    bool  // the single stream was measured (or ranges failed)
	boundary   int64 // switched: the single stream stops here (0: not switched)
	next       int64 // next chunk to schedule
	queue      []*chunk
	err        error
	t          *transport // owns the chunk budget
}

// chunk is one bounded range fetched into a buffer.
type chunk struct {
	start, end int64
	buf        []byte
	off        int // delivered so far
	done       chan struct{}
	err        error
}

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
	n, err := r.first.Read(p)
	r.pos += int64(n)
	if err != nil && err != io.EOF {
		r.err = err
		return n, err
	}
	if r.boundary > 0 && r.pos >= r.boundary {
		r.first.Close()
		r.first = nil
		r.next = max(r.next, r.boundary)
	} else if !r.decided && r.pos-r.probeFrom >= r.cfg.probe {
		r.decide()
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
	elapsed := time.Since(r.probeStart).Seconds()
	rate := float64(r.pos-r.probeFrom) / max(elapsed, 1e-9)
	left := r.desc.Size - r.pos
	if rate >= r.cfg.fast || left < 2*r.cfg.chunk {
		return
	}
	r.boundary = min(r.desc.Size, (r.pos/r.cfg.chunk+1)*r.cfg.chunk)
	r.next = r.boundary
	r.chunkCtx, r.chunkCancel = context.WithCancel(r.ctx)
	r.schedule()
}

// schedule keeps lanes-1 chunks in flight beside the single stream, then
// lanes.
func (r *rangedStream) schedule() {
	want := r.lanes
	if r.first != nil {
		want--
	}
	for len(r.queue) < want && r.next < r.desc.Size {
		buf := r.t.getChunk(r.cfg.chunk)
		if buf == nil {
			return // the budget is spent: see readChunks
		}
		c := &chunk{start: r.next, end: min(r.next+r.cfg.chunk, r.desc.Size), done: make(chan struct{})}
		c.buf = buf[:c.end-c.start]
		r.next = c.end
		r.queue = append(r.queue, c)
		go r.fetch(c)
	}
}

// fetch reads one chunk with a bounded, resumable stream of its own.
func (r *rangedStream) fetch(c *chunk) {
	defer close(c.done)
	bs := r.make(r.chunkCtx, c.start, c.end, true)
	defer bs.Close()
	if err := bs.open(); err != nil {
		c.err = err
		return
	}
	_, c.err = io.ReadFull(bs, c.buf)
}

// readChunks delivers from the chunk at the head of the queue.
func (r *rangedStream) readChunks(p []byte) (int, error) {
	r.schedule()
	if len(r.queue) == 0 {
		// No buffer to fetch into: the next chunk as one bounded stream
		// (a kept-alive connection, since it is read to its end).
		r.boundary = min(r.desc.Size, r.pos+r.cfg.chunk)
		r.first = r.make(r.ctx, r.pos, r.boundary, false)
		if err := r.first.open(); err != nil {
			r.err = err
			return 0, err
		}
		return r.readFirst(p)
	}
	c := r.queue[0]
	select {
	case <-c.done:
	case <-r.ctx.Done():
		r.err = r.ctx.Err()
		return 0, r.err
	}
	if c.err != nil {
		if errors.Is(c.err, errRangeUnusable) {
			return r.fallBack(p)
		}
		r.err = c.err
		return 0, r.err
	}
	n := copy(p, c.buf[c.off:])
	c.off += n
	r.pos += int64(n)
	if c.off == len(c.buf) {
		r.queue = r.queue[1:]
		r.t.putChunk(c.buf)
		r.schedule()
	}
	return n, nil
}

// fallBack gives up on ranges: the chunks in flight are abandoned and one
// stream continues from where the reader is.
func (r *rangedStream) fallBack(p []byte) (int, error) {
	r.chunkCancel()
	r.release()
	r.boundary, r.decided = 0, true
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

// release waits for the chunks in flight and returns their buffers.
func (r *rangedStream) release() {
	for _, c := range r.queue {
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
