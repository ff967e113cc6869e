package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// flight is one upstream fetch of a blob into the store, followed by
// every request for that blob while it runs.
type flight struct {
	desc v1.Descriptor

	mu      sync.Mutex
	landed  int64         // bytes on disk in the .partial file, in order
	started bool          // the .partial file exists
	done    bool          // the fetch ended: err says how
	err     error         // nil: verified and in place
	changed chan struct{} // closed and replaced on every change
}

func newFlight(desc v1.Descriptor) *flight {
	return &flight{desc: desc, changed: make(chan struct{})}
}

// update records progress and wakes the followers.
func (f *flight) update(fn func()) {
	f.mu.Lock()
	fn()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// state is a snapshot and the channel that closes at the next change.
func (f *flight) state() (landed int64, started, done bool, err error, changed <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.landed, f.started, f.done, f.err, f.changed
}

// fetchBlob returns the flight of desc, starting it when none runs: one
// upstream fetch per digest. joined reports attaching to one in flight.
func (m *Mirror) fetchBlob(c *Client, desc v1.Descriptor) (f *flight, joined bool) {
	m.mu.Lock()
	if f := m.flights[desc.Digest]; f != nil {
		m.mu.Unlock()
		m.stats.coalesced.Add(1)
		return f, true
	}
	f = newFlight(desc)
	m.flights[desc.Digest] = f
	m.hold(desc.Digest)
	m.mu.Unlock()
	m.stats.misses.Add(1)
	go m.runFlight(c, f)
	return f, false
}

func (m *Mirror) runFlight(c *Client, f *flight) {
	err := m.store.WriteBlob(m.ctx, c.Source(), f.desc, func(p oci.BlobProgress) {
		f.update(func() {
			f.started = true
			f.landed = max(f.landed, p.Complete)
		})
	})
	if err == nil {
		m.stored(f.desc.Digest, f.desc.Size)
	}
	m.mu.Lock()
	delete(m.flights, f.desc.Digest)
	m.release(f.desc.Digest)
	m.mu.Unlock()
	if err == nil {
		// Before the followers are told: a client that got the whole
		// blob finds the store within its cap.
		m.evict()
	}
	f.update(func() { f.done, f.err = true, err })
}

// followerPoll is how often a follower whose fetch waits for another
// process's landing (the partial file's lock) looks at the file's length.
const followerPoll = 50 * time.Millisecond

// streamFlight answers a GET for the blob of f (rng, of f.desc.Size
// bytes) from the landing in flight: bytes go out as they land. The
// final byte of the answer is held until the fetch is verified; when it
// fails, the connection is aborted so that the client never sees a clean
// end of wrong content.
func (m *Mirror) streamFlight(ctx context.Context, w http.ResponseWriter, f *flight, rng byteRange) {
	fd, err := m.openFollow(ctx, f)
	if err != nil {
		if errors.Is(err, errLanded) {
			m.serveStoredBlob(ctx, w, nil, f.desc, rng)
			return
		}
		m.failBlob(w, err)
		return
	}
	defer fd.Close()
	writeBlobHeaders(w, f.desc, rng)
	follow := &follower{fd: fd}
	pos, end := rng.first, rng.last+1 // bytes [pos, end) go out; the last waits for verification
	buf := make([]byte, 256<<10)
	flusher, _ := w.(http.Flusher)
	for pos < end {
		avail, err := m.waitFor(ctx, f, follow, pos)
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		limit := min(avail, end)
		if limit == end && !m.verified(f) {
			limit = end - 1 // hold the last byte back
		}
		if limit <= pos {
			if err := m.waitDone(ctx, f); err != nil {
				panic(http.ErrAbortHandler)
			}
			continue
		}
		n := min(int64(len(buf)), limit-pos)
		k, rerr := fd.ReadAt(buf[:n], pos)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return
			}
			m.stats.servedBytes.Add(int64(k))
			pos += int64(k)
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr != nil && rerr != io.EOF {
			panic(http.ErrAbortHandler)
		}
	}
}

var errLanded = errors.New("landed")

// openFollow opens the file the flight lands into, once it exists: the
// .partial file, or the blob itself when it landed before we looked
// (errLanded: serve it from the store).
func (m *Mirror) openFollow(ctx context.Context, f *flight) (*os.File, error) {
	for {
		_, started, done, ferr, changed := f.state()
		if done {
			if ferr != nil {
				return nil, ferr
			}
			return nil, errLanded
		}
		if started {
			fd, err := m.store.OpenPartial(f.desc.Digest)
			if err == nil {
				return fd, nil
			}
		} else if fd, err := m.store.OpenPartial(f.desc.Digest); err == nil {
			// Another process lands it: follow its file.
			return fd, nil
		}
		select {
		case <-changed:
		case <-time.After(followerPoll):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// follower is one request reading a landing's file.
type follower struct {
	fd      *os.File
	checked bool // fd was found to be the file our fetch lands into
}

// sameAsLanding checks, once our fetch has started landing, that the
// file followed so far is the one it lands into: a file another process
// was landing and then removed (it failed verification) is not, and
// what was read from it cannot be trusted to continue.
func (m *Mirror) sameAsLanding(f *flight, fl *follower) error {
	if fl.checked {
		return nil
	}
	have, err := fl.fd.Stat()
	if err != nil {
		return err
	}
	for _, p := range []string{m.store.BlobPath(f.desc.Digest) + ".partial", m.store.BlobPath(f.desc.Digest)} {
		if st, err := os.Lstat(p); err == nil && os.SameFile(have, st) {
			fl.checked = true
			return nil
		}
	}
	return fmt.Errorf("blob %s: the landing followed was abandoned", f.desc.Digest)
}

// waitFor waits until bytes beyond pos are available to read: landed by
// our fetch, or present in the file another process is landing. It
// fails when the fetch failed or the request ended.
func (m *Mirror) waitFor(ctx context.Context, f *flight, fl *follower, pos int64) (int64, error) {
	fd := fl.fd
	for {
		landed, started, done, ferr, changed := f.state()
		if done && ferr != nil {
			return 0, ferr
		}
		if started || done {
			if err := m.sameAsLanding(f, fl); err != nil {
				return 0, err
			}
		}
		avail := landed
		if done {
			avail = f.desc.Size
		} else if !started {
			// Our fetch waits for another process's landing: follow the
			// file's length.
			if st, err := fd.Stat(); err == nil {
				avail = st.Size()
			}
		}
		if avail > pos {
			return avail, nil
		}
		select {
		case <-changed:
		case <-time.After(followerPoll):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// waitDone waits for the fetch to end, returning its error.
func (m *Mirror) waitDone(ctx context.Context, f *flight) error {
	for {
		_, _, done, err, changed := f.state()
		if done {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (m *Mirror) verified(f *flight) bool {
	_, _, done, err, _ := f.state()
	return done && err == nil
}

// writeBlobHeaders starts a blob answer of rng (206 for a partial range).
func writeBlobHeaders(w http.ResponseWriter, desc v1.Descriptor, rng byteRange) {
	setBlobIdentity(w.Header(), desc.Digest)
	writeBlobStatus(w, desc.Size, rng)
}

// serveStoredBlob answers from the store: the blob file, verified once
// per unchanged file ([oci.Layout.Blob]). It reports false, having
// written nothing, when the store does not hold the blob (or held a
// garbled one, now removed). r is nil for a GET that joined a fetch.
func (m *Mirror) serveStoredBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, desc v1.Descriptor, rng byteRange) bool {
	rc, err := m.store.Blob(ctx, desc)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			// Garbled or replaced: not ours to serve; fetch it again.
			os.Remove(m.store.BlobPath(desc.Digest))
			m.forgetStored(desc.Digest)
		}
		return false
	}
	defer rc.Close()
	m.mu.Lock()
	m.hold(desc.Digest)
	m.mu.Unlock()
	defer m.releaseLocked(desc.Digest)
	m.touch(desc.Digest)
	writeBlobHeaders(w, desc, rng)
	if r != nil && r.Method == http.MethodHead {
		return true
	}
	f := rc.(*os.File)
	if _, err := f.Seek(rng.first, io.SeekStart); err != nil {
		panic(http.ErrAbortHandler)
	}
	n, _ := io.Copy(w, io.LimitReader(f, rng.last-rng.first+1))
	m.stats.servedBytes.Add(n)
	return true
}

// failBlob answers a blob request whose fetch failed before any byte.
func (m *Mirror) failBlob(w http.ResponseWriter, err error) {
	status, code := upstreamStatus(err)
	writeError(w, status, code, "blob unavailable: "+printable(err.Error(), 300))
}

// upstreamStatus maps an upstream failure to the mirror's answer: the
// upstream's 404 and 401/403 pass through as such, anything else (the
// upstream down, 5xx, 429, a verification failure) is a 502 or 503.
func upstreamStatus(err error) (int, errorCode) {
	var ce *ClientError
	switch {
	case errors.Is(err, ErrManifestUnknown):
		return http.StatusNotFound, codeManifestUnknown
	case errors.Is(err, ErrBlobUnknown):
		return http.StatusNotFound, codeBlobUnknown
	case errors.Is(err, ErrNameUnknown), errors.Is(err, ErrNotFound):
		return http.StatusNotFound, codeNameUnknown
	case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrDenied):
		return http.StatusBadGateway, codeDenied
	case errors.As(err, &ce) && ce.Temporary():
		return http.StatusServiceUnavailable, codeUnsupported
	}
	return http.StatusBadGateway, codeUnsupported
}

// blobDescriptor finds the size of the blob d: from a manifest served
// earlier, from the store, or with a HEAD upstream.
func (m *Mirror) blobDescriptor(ctx context.Context, c *Client, d digest.Digest) (v1.Descriptor, error) {
	desc := v1.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: -1}
	m.mu.Lock()
	if n, ok := m.known[d]; ok {
		desc.Size = n
	} else if e := m.entries[d]; e != nil {
		desc.Size = e.size
	} else if f := m.flights[d]; f != nil {
		desc.Size = f.desc.Size
	}
	m.mu.Unlock()
	if desc.Size >= 0 {
		return desc, nil
	}
	m.stats.upstreamHeads.Add(1)
	got, err := c.StatBlob(ctx, d)
	if err != nil {
		return desc, err
	}
	m.learn(d, got.Size)
	return got, nil
}
