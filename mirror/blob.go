package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/internal/wire"
	"github.com/ocipull/registry/oci"
)

// serveBlob answers a blob request for t: from the store when t's
// upstream repository is known to hold the blob (see trust), else from a
// fetch for t (started by this request or joined).
func (c *Cache) serveBlob(w *wire.Recorder, r *http.Request, t target, reference string) outcome {
	if !wire.ValidDigest(reference) {
		wire.WriteError(w, http.StatusBadRequest, wire.CodeDigestInvalid, "invalid digest")
		return outcome{kind: outRefused}
	}
	ctx, d := r.Context(), digest.Digest(reference)
	k := t.blob(d)
	if info, err := c.store.StatBlob(ctx, d); err == nil {
		stale, err := c.confirm(ctx, t, k, headBlob(d))
		if err != nil {
			return c.fail(w, "blob", err)
		}
		o, served := c.serveStoredBlob(w, r, v1.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: info.Size}, stale, true)
		if served {
			return o
		}
		// Not what its name says (removed), or gone since: fetch it.
	}
	if ok, cause := t.up.breaker.down(); ok {
		return c.fail(w, "blob", &errDown{cause})
	}
	desc, err := c.blobDescriptor(ctx, t, k)
	if err != nil {
		c.upstreamFailed(t.up, err)
		return c.fail(w, "blob", err)
	}
	rng, ok := wire.ParseRange(r.Header.Get("Range"), desc.Size)
	if !ok {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", desc.Size))
		wire.WriteError(w, http.StatusRequestedRangeNotSatisfiable, wire.CodeSizeInvalid, "range not satisfiable")
		return outcome{kind: outRefused}
	}
	if r.Method == http.MethodHead {
		// Confirmed upstream (known, or by the HEAD just made): answer
		// without fetching.
		wire.WriteBlobHeaders(w, d, desc.Size, rng)
		return outcome{kind: outPassed}
	}
	f, joined, err := c.startFlight(t, desc, clientAddr(r))
	if err != nil {
		return c.fail(w, "blob", err)
	}
	defer f.leave(&c.windows)
	kind := outMiss
	if joined {
		kind = outCoalesced
	}
	err = c.streamFlight(ctx, w, f, rng)
	switch {
	case err == nil:
		return outcome{kind: kind}
	case errors.Is(err, errLanded):
		if o, served := c.serveStoredBlob(w, r, desc, false, false); served {
			return outcome{kind, o.cause}
		}
		return c.fail(w, "blob", fmt.Errorf("%w: the blob landed and then could not be read", errStore))
	}
	return c.fail(w, "blob", err)
}

// confirm decides whether stored content k may be served for t's
// repository: yes when known there; else head (one HEAD upstream,
// coalesced) decides, and a yes is remembered; when the upstream is down,
// content a manifest of the repository names is served stale, anything
// else is an error.
func (c *Cache) confirm(ctx context.Context, t target, k blobKey, head func(context.Context, *registry.Client) error) (stale bool, err error) {
	if c.trust.isKnown(k) {
		return false, nil
	}
	_, named := c.trust.namedSize(k)
	if down, cause := t.up.breaker.down(); down {
		if named {
			return true, nil
		}
		return false, &errDown{cause}
	}
	_, _, err = c.confirms.do(ctx, c.ctx, k, func(ctx context.Context) (struct{}, error) {
		ctx, cancel := context.WithTimeout(ctx, t.up.timeout)
		defer cancel()
		if err := head(ctx, t.client()); err != nil {
			c.upstreamFailed(t.up, err)
			return struct{}{}, err
		}
		t.up.breaker.succeeded()
		c.trust.add(k)
		return struct{}{}, nil
	})
	if err != nil && named && isDown(err) {
		return true, nil
	}
	return false, err
}

// headBlob and headManifest are confirm's HEADs.
func headBlob(d digest.Digest) func(context.Context, *registry.Client) error {
	return func(ctx context.Context, c *registry.Client) error {
		_, err := c.StatBlob(ctx, d)
		return err
	}
}

func headManifest(d digest.Digest) func(context.Context, *registry.Client) error {
	return func(ctx context.Context, c *registry.Client) error {
		_, err := c.Resolve(ctx, string(d))
		return err
	}
}

// blobDescriptor is the descriptor of a blob to fetch for t: its size as
// a manifest of t's repository gave it, or as a HEAD upstream says (which
// also confirms the repository holds it).
func (c *Cache) blobDescriptor(ctx context.Context, t target, k blobKey) (v1.Descriptor, error) {
	if n, ok := c.trust.namedSize(k); ok {
		return v1.Descriptor{MediaType: "application/octet-stream", Digest: k.d, Size: n}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.up.timeout)
	defer cancel()
	desc, err := t.client().StatBlob(ctx, k.d)
	if err != nil {
		return desc, err
	}
	t.up.breaker.succeeded()
	c.trust.add(k)
	c.trust.nameAll(k.up, k.repo, []v1.Descriptor{desc})
	return desc, nil
}

// serveStoredBlob answers from the store, the content verified before its
// first byte (once per unchanged file). It reports false, having written
// nothing, when the store cannot serve it: gone, or proven wrong (then
// removed: the one case where the cache deletes content).
func (c *Cache) serveStoredBlob(w *wire.Recorder, r *http.Request, desc v1.Descriptor, stale, count bool) (outcome, bool) {
	ctx := r.Context()
	rng, ok := wire.ParseRange(r.Header.Get("Range"), desc.Size)
	if !ok {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", desc.Size))
		wire.WriteError(w, http.StatusRequestedRangeNotSatisfiable, wire.CodeSizeInvalid, "range not satisfiable")
		return outcome{kind: outRefused}, true
	}
	c.acct.hold(desc.Digest)
	defer c.acct.release(desc.Digest)
	first := rng.First
	if desc.Size == 0 {
		first = 0
	}
	rc, err := c.store.BlobAt(ctx, desc, first)
	if err != nil {
		switch {
		case errors.Is(err, oci.ErrNotFound):
			return outcome{}, false
		case (errors.Is(err, oci.ErrDigestMismatch) || errors.Is(err, oci.ErrSizeMismatch)) && ctx.Err() == nil:
			c.log.Error("stored blob does not match its digest; removing it", "digest", string(desc.Digest), "cause", safe(err.Error()))
			if rerr := c.store.RemoveBlob(c.ctx, desc.Digest); rerr == nil {
				c.acct.forget(desc.Digest)
			}
			return outcome{}, false
		}
		return c.fail(w, "blob", fmt.Errorf("%w: %w", errStore, err)), true
	}
	defer rc.Close()
	c.acct.touch(ctx, desc.Digest, desc.Size)
	kind := outHit
	switch {
	case stale:
		kind = outStale
		c.stats.stale.Add(1)
		w.Header()["Warning"] = []string{staleWarning}
	case count:
		c.stats.hits.Add(1)
	}
	wire.WriteBlobHeaders(w, desc.Digest, desc.Size, rng)
	if r.Method == http.MethodHead || desc.Size == 0 {
		return outcome{kind: kind}, true
	}
	if err := c.copyOut(w, rc, rng.Len()); err != nil {
		panic(http.ErrAbortHandler)
	}
	return outcome{kind: kind}, true
}

// staleWarning marks answers served from the store because the upstream
// could not be asked (RFC 9111 section 5.5, warn-code 110).
const staleWarning = `110 - "Response is Stale"`

// copyChunk is how much of a stored blob goes out per write deadline.
const copyChunk = 4 << 20

// copyOut copies n bytes from src to the client in chunks, each with the
// write deadline (a client that accepts nothing for WriteTimeout is cut).
// Through the recorder, a file reaches sendfile(2).
func (c *Cache) copyOut(w *wire.Recorder, src io.Reader, n int64) error {
	rc := http.NewResponseController(w)
	for n > 0 {
		rc.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
		chunk := min(n, copyChunk)
		// Counted before it goes out, so that a client that has the
		// bytes finds them counted.
		c.stats.servedBytes.Add(chunk)
		k, err := io.CopyN(w, src, chunk)
		c.stats.servedBytes.Add(k - chunk)
		n -= k
		if err != nil {
			return err
		}
	}
	rc.SetWriteDeadline(time.Time{})
	return nil
}

// followPoll is how often a follower whose fetch waits for another
// process's landing looks at that landing's file.
const followPoll = 50 * time.Millisecond

// streamFlight answers a GET for f's blob (rng of it) from the landing in
// flight: bytes go out as they land, and the blob's last byte is held
// until the fetch is verified; when it fails, the connection is
// aborted, so the client never sees a clean end of wrong content. The
// response starts only once bytes have landed: a fetch that fails before
// (an upstream 404) is answered as that failure (the error returned,
// nothing written). errLanded means the blob landed before this request
// read any of it: serve it from the store.
func (c *Cache) streamFlight(ctx context.Context, w *wire.Recorder, f *flight, rng wire.ByteRange) error {
	if rng.First >= rng.Last+1 {
		return c.waitEmpty(ctx, f)
	}
	fl := &follower{c: c, ctx: ctx, w: w, f: f, rng: rng, pos: rng.First, end: rng.Last + 1,
		buf: make([]byte, 32<<10), rc: http.NewResponseController(w)}
	defer fl.close()
	for fl.pos < fl.end {
		st := f.state()
		if st.done {
			if err, finished := fl.finish(st); finished {
				return err
			}
		}
		limit, ok := fl.available(st)
		if !ok {
			continue
		}
		if limit <= fl.pos {
			fl.wait(st)
			continue
		}
		fl.send(limit)
	}
	if !fl.sent {
		wire.WriteBlobHeaders(w, f.desc.Digest, f.desc.Size, rng)
	}
	fl.rc.SetWriteDeadline(time.Time{})
	return nil
}

// waitEmpty answers a request with nothing to stream (an empty blob) once
// its fetch verified: errLanded, or the fetch's error.
func (c *Cache) waitEmpty(ctx context.Context, f *flight) error {
	for st := f.state(); !st.done; st = f.state() {
		if !c.waitFlight(ctx, st) {
			panic(http.ErrAbortHandler)
		}
	}
	if st := f.state(); st.err != nil {
		return st.err
	}
	return errLanded
}

// follower is one request streaming a flight's landing.
type follower struct {
	c    *Cache
	ctx  context.Context
	w    *wire.Recorder
	f    *flight
	rng  wire.ByteRange
	rc   *http.ResponseController
	buf  []byte
	wbuf *[]byte // followBuffer bytes for copies out of the window, pooled
	g    Growing // the landing file followed, or nil
	own  bool    // g is the landing our fetch writes
	sent bool    // the response has begun
	// pos and end: bytes [pos, end) are still to go out.
	pos, end int64
}

func (fl *follower) close() {
	if fl.g != nil {
		fl.g.Close()
	}
	if fl.wbuf != nil {
		fl.c.followBufs.Put(fl.wbuf)
	}
}

func (fl *follower) abort() { panic(http.ErrAbortHandler) }

// drop forgets the file followed; what went out of it cannot be trusted,
// so a response under way is cut.
func (fl *follower) drop() {
	fl.g.Close()
	fl.g = nil
	if fl.sent {
		fl.abort()
	}
}

// wait waits for the flight to move (or the request to end: cut).
func (fl *follower) wait(st flightState) {
	if !fl.c.waitFlight(fl.ctx, st) {
		fl.abort()
	}
}

// finish handles a flight that ended: its error (returned before the
// response began, else the response cut), or its verified blob, whose
// rest comes from the store unless our own landing file is followed.
// finished is false when streaming goes on from our own file.
func (fl *follower) finish(st flightState) (err error, finished bool) {
	if st.err != nil {
		if !fl.sent {
			return st.err, true
		}
		fl.abort()
	}
	if fl.g != nil && fl.own {
		return nil, false
	}
	if !fl.sent {
		return errLanded, true
	}
	rest, err := fl.c.store.BlobAt(fl.ctx, fl.f.desc, fl.pos)
	if err != nil {
		fl.abort()
	}
	err = fl.c.copyOut(fl.w, rest, fl.end-fl.pos)
	rest.Close()
	if err != nil {
		fl.abort()
	}
	return nil, true
}

// available opens the landing when needed and says up to where bytes may
// go out now (the blob's last byte waits for verification); ok is
// false when the caller should look at the flight again.
func (fl *follower) available(st flightState) (limit int64, ok bool) {
	if fl.g == nil {
		g, err := fl.c.store.FollowBlob(fl.ctx, fl.f.desc.Digest)
		if err != nil {
			fl.wait(st)
			return 0, false
		}
		fl.g, fl.own = g, false
	}
	if st.started && !fl.own {
		// Our fetch has begun landing: make sure g is its file.
		if _, state, _ := fl.g.Progress(); state == oci.Abandoned {
			// Our landing let go of it (failing, or about to start
			// again): wait for the flight to move instead of looking
			// again at once.
			fl.drop()
			fl.wait(st)
			return 0, false
		}
		fl.own = true
	}
	avail, complete := int64(0), st.done
	switch {
	case st.done:
		avail = fl.f.desc.Size
	case fl.own:
		avail = st.landed
	default:
		// Our fetch waits for another process's landing: follow it.
		n, state, _ := fl.g.Progress()
		switch state {
		case oci.Landing:
			avail = n
		case oci.Landed:
			avail, complete = fl.f.desc.Size, true
		default:
			fl.drop()
			fl.wait(st)
			return 0, false
		}
	}
	limit = min(avail, fl.end)
	if limit == fl.f.desc.Size && !complete {
		// The blob's last byte completes its content: it waits for the
		// verification. A range that ends before it goes out whole as
		// soon as its bytes landed (a ranged client, ours or containerd's,
		// must not stall on every chunk until the whole blob is
		// verified); no client can assemble the complete content of a
		// blob that fails.
		limit = fl.f.desc.Size - 1
	}
	return limit, true
}

// send writes the next bytes below limit, starting the response if need
// be, under the write deadline: from the landing file with sendfile where
// the store allows it (see RangeWriter), else through buf.
func (fl *follower) send(limit int64) {
	if !fl.sent {
		wire.WriteBlobHeaders(fl.w, fl.f.desc.Digest, fl.f.desc.Size, fl.rng)
		fl.sent = true
	}
	fl.rc.SetWriteDeadline(time.Now().Add(fl.c.cfg.WriteTimeout))
	if fl.own && fl.sendFromWindow(limit) {
		return
	}
	if rw, ok := fl.g.(RangeWriter); ok {
		n := min(copyChunk, limit-fl.pos)
		fl.c.stats.servedBytes.Add(n)
		k, err := rw.WriteRangeTo(fl.w, fl.pos, n)
		fl.c.stats.servedBytes.Add(k - n)
		fl.pos += k
		if err != nil {
			fl.abort()
		}
		fl.rc.Flush()
		return
	}
	n := min(int64(len(fl.buf)), limit-fl.pos)
	k, rerr := fl.g.ReadAt(fl.buf[:n], fl.pos)
	if k > 0 {
		fl.c.stats.servedBytes.Add(int64(k))
		if _, werr := fl.w.Write(fl.buf[:k]); werr != nil {
			fl.abort()
		}
		fl.pos += int64(k)
		fl.rc.Flush()
	}
	if rerr != nil && rerr != io.EOF {
		fl.abort()
	}
}

// sendFromWindow sends the next bytes below limit from the flight's
// window (see window.go), reporting false when it holds none of them.
func (fl *follower) sendFromWindow(limit int64) bool {
	if fl.f.desc.Size < windowMinSize {
		return false // no window for a small blob: no buffer either
	}
	if fl.wbuf == nil {
		fl.wbuf = fl.c.followBufs.Get().(*[]byte)
	}
	buf := (*fl.wbuf)[:min(int64(len(*fl.wbuf)), limit-fl.pos)]
	k := fl.f.copyFromWindow(buf, fl.pos)
	if k == 0 {
		return false
	}
	fl.c.stats.servedBytes.Add(int64(k))
	if _, err := fl.w.Write(buf[:k]); err != nil {
		fl.abort()
	}
	fl.pos += int64(k)
	fl.rc.Flush()
	return true
}

// waitFlight waits for the flight to change (or, while it waits for
// another process's landing, for the next look at it); false when the
// request ended.
func (c *Cache) waitFlight(ctx context.Context, st flightState) bool {
	var poll <-chan time.Time
	if !st.started && !st.done {
		t := time.NewTimer(followPoll)
		defer t.Stop()
		poll = t.C
	}
	select {
	case <-st.changed:
	case <-poll:
	case <-ctx.Done():
		return false
	}
	return true
}
