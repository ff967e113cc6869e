package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ocipull/registry/internal/wire"

	"github.com/cenkalti/backoff/v4"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// clientSource is the oci.Source of refs read by a Client: manifests and
// blobs of the client's repository, by digest, through its transport.
type clientSource struct{ c *Client }

// Manifest implements oci.Source: the manifest is fetched by digest;
// oci.LoadRef verifies it against the descriptor (digest, size, media type).
func (s clientSource) Manifest(ctx context.Context, desc v1.Descriptor) ([]byte, error) {
	if _, err := s.c.start(); err != nil {
		return nil, err
	}
	if err := validateDigest(string(desc.Digest)); err != nil {
		return nil, err
	}
	var raw []byte
	err := s.c.reg.onEndpoints(ctx, CapabilityPull, func(t *transport) error {
		b, _, err := s.c.fetchManifest(ctx, t, string(desc.Digest))
		if err == nil && t.mirror {
			// Checked here too so that a mirror's wrong bytes fall
			// through to the next endpoint (LoadRef checks them all).
			if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
				return fmt.Errorf("manifest %s from mirror %s: %w: content hashes to %s", desc.Digest, t.host, oci.ErrDigestMismatch, got)
			}
		}
		raw = b
		return err
	})
	return raw, err
}

// Blob implements oci.Source with a resumable stream.
func (s clientSource) Blob(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	return s.BlobAt(ctx, desc, 0)
}

// BlobAt implements oci.RangeSource: the stream starts at offset.
func (s clientSource) BlobAt(ctx context.Context, desc v1.Descriptor, offset int64) (io.ReadCloser, error) {
	if _, err := s.c.start(); err != nil {
		return nil, err
	}
	if err := validateDigest(string(desc.Digest)); err != nil {
		return nil, err
	}
	if desc.Size < 0 || offset < 0 || offset > desc.Size {
		return nil, fmt.Errorf("blob %s: %w: offset %d, size %d", desc.Digest, oci.ErrInvalidDescriptor, offset, desc.Size)
	}
	var rc io.ReadCloser
	var on *transport
	err := s.c.reg.onEndpoints(ctx, CapabilityPull, func(t *transport) error {
		if t.mirror && t.wasBad(desc.Digest) {
			return fmt.Errorf("blob %s: mirror %s served bytes that did not verify before: %w", desc.Digest, t.host, oci.ErrDigestMismatch)
		}
		var err error
		rc, err = s.openOn(ctx, t, desc, offset)
		on = t
		return err
	})
	if err != nil || !on.mirror {
		return rc, err
	}
	// A mirror's stream that breaks for good mid-blob goes on from the
	// endpoints after it.
	var rest []*transport
	ts := s.c.reg.route(CapabilityPull)
	for i, t := range ts {
		if t == on {
			rest = ts[i+1:]
		}
	}
	return &fallbackStream{s: s, ctx: ctx, desc: desc, cur: rc, on: on, pos: offset, rest: rest}, nil
}

// fallbackStream is a blob stream opened on a mirror: when the mirror's
// stream fails for good (its own resumptions exhausted, the mirror gone),
// it opens the rest of the blob, from the offset reached, on the next
// endpoint that has it, the registry last. The bytes are verified as a
// whole by the reader above; a mirror's wrong bytes are not fallen past
// (they fail the read, and the mirror is passed over next time).
type fallbackStream struct {
	s    clientSource
	ctx  context.Context
	desc v1.Descriptor
	cur  io.ReadCloser
	on   *transport
	pos  int64
	rest []*transport
}

func (f *fallbackStream) Read(p []byte) (int, error) {
	n, err := f.cur.Read(p)
	f.pos += int64(n)
	if err == nil || err == io.EOF || f.ctx.Err() != nil || len(f.rest) == 0 ||
		errors.Is(err, oci.ErrDigestMismatch) || errors.Is(err, oci.ErrSizeMismatch) {
		return n, err
	}
	first := err
	for len(f.rest) > 0 {
		t := f.rest[0]
		f.rest = f.rest[1:]
		if t.mirror && t.wasBad(f.desc.Digest) {
			continue
		}
		next, oerr := f.s.openOn(f.ctx, t, f.desc, f.pos)
		if oerr != nil {
			continue
		}
		f.cur.Close()
		f.cur, f.on = next, t
		return n, nil
	}
	return n, first
}

// VerifyFailed passes the news on to the stream that served the bytes.
func (f *fallbackStream) VerifyFailed() {
	if v, ok := f.cur.(oci.VerifyFailedNotifier); ok {
		v.VerifyFailed()
	}
}

func (f *fallbackStream) Close() error { return f.cur.Close() }

// openOn opens the blob on one endpoint. The first request is made now, so
// that a missing blob or a refused request is reported by the open (and
// falls through to the next endpoint), not by the first read.
func (s clientSource) openOn(ctx context.Context, t *transport, desc v1.Descriptor, offset int64) (io.ReadCloser, error) {
	u := t.registryURL(wire.Path(s.c.name, wire.Blobs, string(desc.Digest)), "")
	mk := func(ctx context.Context, start, end int64, strict bool) *blobStream {
		return &blobStream{t: t, ctx: ctx, desc: desc, url: u, scope: s.c.scope, offset: start, end: end, strict: strict}
	}
	lanes := s.c.reg.rangeLanes()
	if lanes < 2 || desc.Size-offset < t.ranged.minSize {
		r := mk(ctx, offset, 0, false)
		if desc.Size > offset {
			if err := r.open(); err != nil {
				return nil, err
			}
		}
		return r, nil
	}
	rctx, cancel := context.WithCancel(ctx)
	// The first stream is bounded at one chunk: when the probe finds the
	// link slow, chunks take over from that boundary and nothing the first
	// stream was sent is thrown away.
	first := mk(rctx, offset, min(desc.Size, offset+t.ranged.chunk), true)
	decided := false
	err := first.open()
	if errors.Is(err, errRangeUnusable) {
		// The registry cannot serve a bounded range: one stream.
		first = mk(rctx, offset, 0, false)
		first.noRange, decided = true, true
		err = first.open()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	first.strict = false // resumed within its range like any stream
	return &rangedStream{first: first, ctx: rctx, cancel: cancel, lanes: lanes, ahead: s.c.reg.rangesAhead(lanes), cfg: t.ranged, desc: desc, make: mk, t: t,
		pos: offset, probeFrom: offset, decided: decided}, nil
}

// RangedFetchConns is how many connections one ranged fetch may hold
// with the default RangeParallelism: its lanes, the requests sent ahead
// of them, and the first stream until its bounded range ends. A caller
// that caps MaxConnsPerHost at its own blob-level parallelism adds this
// so that ranged lanes never wait for a connection.
const RangedFetchConns = defaultParallel + preopened + 1

// rangesAhead is how many chunk requests are sent beyond the lanes: none
// that would have to wait for a connection under MaxConnsPerHost (the
// first stream holds one until its bounded range ends).
func (r *Registry) rangesAhead(lanes int) int {
	if r.MaxConnsPerHost <= 0 {
		return preopened
	}
	return max(0, min(preopened, r.MaxConnsPerHost-lanes-1))
}

// rangeLanes is how many ranges of one blob may be in flight:
// RangeParallelism (8 when zero), at most MaxConnsPerHost when set.
func (r *Registry) rangeLanes() int {
	n := r.RangeParallelism
	if n == 0 {
		n = defaultParallel
	}
	if r.MaxConnsPerHost > 0 {
		n = min(n, r.MaxConnsPerHost)
	}
	return n
}

const (
	// maxIgnoredRanges bounds how often a server may answer a resumption
	// with the whole blob (200 instead of 206): each costs a re-download of
	// the prefix.
	maxIgnoredRanges = 3
	// maxResumes bounds the resumptions of one stream that made little
	// progress (less than resumeProgress bytes since the previous break), so
	// a server that cuts every connection after a byte cannot hold a reader
	// forever, while a long download over a flaky network resumes as often
	// as it keeps moving.
	maxResumes     = 64
	resumeProgress = 64 << 10
)

// blobStream reads one blob over as many connections as it takes: when a
// read fails (network error, stall, early end of body) it reopens at the
// current offset with a closed Range, under the client's retry policy.
// It yields the bytes from the offset it was made with up to its end (the
// blob's size unless bounded) and is not itself verifying:
// oci.VerifyReader wraps it.
type blobStream struct {
	t      *transport
	ctx    context.Context // the stream's own: the caller's OpenBlob context
	desc   v1.Descriptor
	url    *url.URL
	scope  string
	offset int64 // absolute position of the next byte to deliver
	body   io.ReadCloser
	skip   int64 // bytes of body to discard (server ignored Range)
	known  bool  // body has a Content-Length, so EOF can be observed free
	bo     backoff.BackOff
	moved  int64 // bytes delivered since the last break
	resume int   // breaks after less than resumeProgress bytes
	ranges int
	err    error

	// end bounds the stream to bytes [start, end) of the blob: 0 means
	// the blob's size. strict is set for one chunk of a ranged fetch: a
	// server that ignores or garbles the range is then reported as
	// errRangeUnusable (the ranged fetch falls back to one stream)
	// instead of being worked around.
	end    int64
	strict bool
	// noRange asks for the whole blob on every request and skips the
	// prefix: for a registry whose ranges cannot be used at all.
	noRange bool
}

// errRangeUnusable means a server answered a bounded range with the whole
// blob or a wrong Content-Range.
var errRangeUnusable = errors.New("the registry does not serve bounded ranges")

// limit is the absolute end of the stream.
func (r *blobStream) limit() int64 {
	if r.end > 0 {
		return r.end
	}
	return r.desc.Size
}

// open requests the blob from r.offset, retrying transient failures.
func (r *blobStream) open() error {
	return r.t.retry(r.ctx, &r.bo, func() error {
		req := &request{method: http.MethodGet, url: r.url, scope: r.scope}
		if !r.noRange && (r.offset > 0 || r.limit() < r.desc.Size) {
			req.rng = "bytes=" + strconv.FormatInt(r.offset, 10) + "-" + strconv.FormatInt(r.limit()-1, 10)
		}
		resp, err := r.t.attempt(r.ctx, req)
		if err != nil {
			return err
		}
		if err := r.accept(resp); err != nil {
			resp.Body.Close()
			return err
		}
		r.body = resp.Body
		return nil
	})
}

// accept checks a blob response against the descriptor and the range asked for.
func (r *blobStream) accept(resp *http.Response) error {
	r.skip = 0
	r.known = resp.ContentLength >= 0
	switch {
	case resp.StatusCode == http.StatusPartialContent && (r.offset > 0 || r.limit() < r.desc.Size):
		first, last, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || first != r.offset || last > r.limit()-1 || (total >= 0 && total != r.desc.Size) {
			err := fmt.Errorf("blob %s: %w: asked for bytes %d-%d/%d, got Content-Range %q",
				r.desc.Digest, ErrProtocol, r.offset, r.limit()-1, r.desc.Size, printable(resp.Header.Get("Content-Range"), 80))
			if r.strict {
				err = fmt.Errorf("%w: %w", errRangeUnusable, err)
			}
			return backoff.Permanent(err)
		}
		if resp.ContentLength >= 0 && resp.ContentLength != last-first+1 {
			return backoff.Permanent(fmt.Errorf("blob %s: %w: Content-Length %d disagrees with Content-Range %q",
				r.desc.Digest, ErrProtocol, resp.ContentLength, printable(resp.Header.Get("Content-Range"), 80)))
		}
	case resp.StatusCode == http.StatusOK && r.strict:
		return backoff.Permanent(fmt.Errorf("blob %s: %w: a bounded range was answered with the whole blob", r.desc.Digest, errRangeUnusable))
	case resp.StatusCode == http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != r.desc.Size {
			return backoff.Permanent(fmt.Errorf("blob %s: %w: Content-Length %d, descriptor says %d",
				r.desc.Digest, oci.ErrSizeMismatch, resp.ContentLength, r.desc.Size))
		}
		if r.offset > 0 {
			if !r.noRange {
				r.ranges++
			}
			if r.ranges > maxIgnoredRanges {
				return backoff.Permanent(fmt.Errorf("blob %s: %w: the server ignored Range %d times", r.desc.Digest, ErrProtocol, r.ranges))
			}
			r.skip = r.offset
		}
	default:
		return backoff.Permanent(fmt.Errorf("blob %s: %w: unexpected status %d", r.desc.Digest, ErrProtocol, resp.StatusCode))
	}
	return nil
}

// Read delivers the next bytes, resuming as described on blobStream.
func (r *blobStream) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.offset >= r.limit() {
			r.finish()
			return 0, io.EOF
		}
		if r.body == nil {
			if err := r.open(); err != nil {
				r.err = err
				return 0, err
			}
		}
		if r.skip > 0 {
			n, err := io.CopyN(io.Discard, r.body, r.skip)
			r.skip -= n
			if err != nil {
				if rerr := r.broken(err); rerr != nil {
					return 0, rerr
				}
				continue
			}
		}
		if want := r.limit() - r.offset; int64(len(p)) > want {
			p = p[:want]
		}
		n, err := r.body.Read(p)
		r.offset += int64(n)
		if n > 0 {
			r.moved += int64(n)
		}
		if r.offset >= r.limit() {
			r.finish()
			return n, nil
		}
		if err != nil {
			if rerr := r.broken(err); rerr != nil {
				if n > 0 {
					return n, nil // the error is sticky: the next Read returns it
				}
				return 0, rerr
			}
			if n == 0 {
				continue
			}
		}
		return n, nil
	}
}

// broken handles a failed body read: it closes the body and either leaves
// the stream ready to reopen at the offset, or sets and returns the
// terminal error.
func (r *blobStream) broken(err error) error {
	r.body.Close()
	r.body = nil
	if r.ctx.Err() != nil {
		r.err = r.ctx.Err()
		return r.err
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if r.moved < resumeProgress {
		r.resume++
		if r.resume > maxResumes {
			r.err = fmt.Errorf("gave up after %d resumptions that made little progress: %w", maxResumes, err)
			return r.err
		}
	}
	if r.moved > 0 {
		// Progress since the last break: the policy starts over.
		r.bo = r.t.newBackOff()
		r.moved = 0
	}
	if r.bo == nil {
		r.bo = r.t.newBackOff()
	}
	wait, ok := r.t.nextWait(r.ctx, r.bo, err)
	if !ok {
		r.err = fmt.Errorf("broken after %d of %d bytes: %w", r.offset, r.desc.Size, err)
		return r.err
	}
	if r.t.notify != nil {
		r.t.notify(err, wait)
	}
	if err := sleep(r.ctx, wait); err != nil {
		r.err = err
		return r.err
	}
	return nil
}

// finish reads the body's end when that costs no I/O, so the connection
// goes back to the pool, and closes it.
func (r *blobStream) finish() {
	if r.body == nil {
		return
	}
	if r.known {
		var one [1]byte
		r.body.Read(one[:])
	}
	r.body.Close()
	r.body = nil
}

// Close releases the connection.
// VerifyFailed is oci.VerifyReader telling the stream that its bytes did
// not verify: a mirror that served them is passed over for this blob.
func (r *blobStream) VerifyFailed() { r.t.servedBad(r.desc.Digest) }

func (r *blobStream) Close() error {
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
	if r.err == nil {
		r.err = errors.New("read from closed blob stream")
	}
	return nil
}

// StatBlob returns the descriptor of the blob d, known only by its
// digest, with one HEAD request (retried like any request, on the mirrors
// first): its size is the registry's claim, which [Client.OpenBlob]
// then holds the bytes to, verifying them against d. The media type is
// application/octet-stream.
func (c *Client) StatBlob(ctx context.Context, d digest.Digest) (v1.Descriptor, error) {
	if _, err := c.start(); err != nil {
		return v1.Descriptor{}, err
	}
	if err := validateDigest(string(d)); err != nil {
		return v1.Descriptor{}, err
	}
	var size int64 = -1
	err := c.reg.onEndpoints(ctx, CapabilityPull, func(t *transport) error {
		req := &request{method: http.MethodHead, url: t.registryURL(wire.Path(c.name, wire.Blobs, string(d)), ""), scope: c.scope}
		var bo backoff.BackOff
		return t.retry(ctx, &bo, func() error {
			resp, err := t.attempt(ctx, req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.ContentLength < 0 {
				return backoff.Permanent(fmt.Errorf("blob %s: %w: HEAD without Content-Length", d, ErrProtocol))
			}
			size = resp.ContentLength
			return nil
		})
	})
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: size}, nil
}
