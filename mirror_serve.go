package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

const (
	defaultTagTTL  = 5 * time.Minute
	defaultListTTL = 30 * time.Second
	// staleWarning marks answers served from the store because the
	// upstream could not be asked (RFC 9111 section 5.5, warn-code 110).
	staleWarning = `110 - "Response is Stale"`
	// upstreamTimeout bounds one upstream metadata question (a tag HEAD, a
	// manifest, a tag list) asked on behalf of a request, so a hung
	// upstream turns into a stale answer instead of a hung client.
	upstreamTimeout = 30 * time.Second
)

// ServeHTTP implements http.Handler.
func (m *Mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		if m.Log != nil {
			m.Log(fmt.Sprintf("%s %s %d %d %s %s", r.Method, printable(r.URL.RequestURI(), 300), rec.status, rec.bytes,
				time.Since(start).Round(time.Millisecond), rec.note))
		}
	}()
	m.serve(rec, r)
}

func (m *Mirror) serve(w *recorder, r *http.Request) {
	w.Header()["Docker-Distribution-Api-Version"] = []string{"registry/2.0"}
	path := r.URL.Path
	switch {
	case path == "/metrics":
		m.serveMetrics(w)
		return
	case m.Auth != nil && path == m.Auth.tokenPath():
		m.Auth.serveToken(w, r)
		return
	case path != "/v2" && !strings.HasPrefix(path, "/v2/"):
		writeError(w, http.StatusNotFound, codeUnsupported, "not a registry API path")
		return
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "this mirror is read-only")
		return
	case path == "/v2" || path == "/v2/":
		if m.Auth.authorize(w, r, "") {
			writeJSON(w, r, "application/json", struct{}{})
		}
		return
	}
	rt, ok := parseRoute(path)
	if !ok {
		writeError(w, http.StatusNotFound, codeUnsupported, "unknown API path")
		return
	}
	if !m.Auth.authorize(w, r, pullScope(rt.name)) {
		return
	}
	up, repo, err := m.route(r.URL.Query().Get("ns"), rt.name)
	if err != nil {
		status, code := http.StatusNotFound, codeNameUnknown
		if errors.Is(err, ErrInvalidReference) {
			status, code = http.StatusBadRequest, codeNameInvalid
		}
		writeError(w, status, code, err.Error())
		return
	}
	c := m.client(up, repo)
	switch rt.kind {
	case kindManifests:
		m.serveManifest(w, r, up, c, rt.reference)
	case kindBlobs:
		m.serveBlob(w, r, c, rt.reference)
	case kindTags:
		m.serveTags(w, r, up, c, rt.name)
	case kindReferrers:
		m.serveReferrers(w, r, up, c, rt.reference)
	}
}

// serveBlob answers a blob request: from the store when it holds the
// blob, else from the fetch in flight (started by this request or
// another).
func (m *Mirror) serveBlob(w *recorder, r *http.Request, c *Client, reference string) {
	if validateDigest(reference) != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, "invalid digest")
		return
	}
	ctx := r.Context()
	desc, err := m.blobDescriptor(ctx, c, digest.Digest(reference))
	if err != nil {
		m.stats.upstreamErrors.Add(1)
		w.note = "upstream-error"
		m.failBlob(w, err)
		return
	}
	rng, ok := parseRange(r.Header.Get("Range"), desc.Size)
	if !ok {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", desc.Size))
		writeError(w, http.StatusRequestedRangeNotSatisfiable, codeSizeInvalid, "range not satisfiable")
		return
	}
	if desc.Size == 0 {
		rng = byteRange{0, -1, false}
	}
	if m.serveStoredBlob(ctx, w, r, desc, rng) {
		m.stats.hits.Add(1)
		w.note = "hit"
		return
	}
	if r.Method == http.MethodHead {
		w.note = "head"
		writeBlobHeaders(w, desc, rng)
		return
	}
	f, joined := m.fetchBlob(c, desc)
	w.note = "miss"
	if joined {
		w.note = "coalesced"
	}
	m.streamFlight(ctx, w, f, rng)
}

// serveManifest answers a manifest request: by digest from the store or
// one coalesced upstream fetch; by tag through the tag cache.
func (m *Mirror) serveManifest(w *recorder, r *http.Request, up *upstream, c *Client, reference string) {
	ctx := r.Context()
	var ref oci.Ref
	var err error
	stale := false
	if strings.Contains(reference, ":") {
		if validateDigest(reference) != nil {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, "invalid digest")
			return
		}
		ref, err = m.manifestByDigest(ctx, c, digest.Digest(reference), w)
	} else {
		if validateTag(reference) != nil {
			writeError(w, http.StatusBadRequest, codeNameInvalid, "invalid tag")
			return
		}
		ref, stale, err = m.manifestByTag(ctx, up, c, reference, w)
	}
	if err != nil {
		status, code := upstreamStatus(err)
		if status == http.StatusNotFound {
			code = codeManifestUnknown
		}
		writeError(w, status, code, "manifest unavailable: "+printable(err.Error(), 300))
		return
	}
	m.learnChildren(ref)
	h := w.Header()
	desc := ref.Descriptor()
	h["Content-Type"] = []string{desc.MediaType}
	h["Content-Length"] = []string{strconv.FormatInt(desc.Size, 10)}
	h["Docker-Content-Digest"] = []string{string(desc.Digest)}
	h["Etag"] = []string{`"` + string(desc.Digest) + `"`}
	if stale {
		h["Warning"] = []string{staleWarning}
		m.stats.stale.Add(1)
	}
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, string(desc.Digest)) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		n, _ := w.Write(ref.RawManifest())
		m.stats.servedBytes.Add(int64(n))
	}
}

// learnChildren remembers the sizes of what a served manifest names, so
// that their blob requests need no HEAD upstream.
func (m *Mirror) learnChildren(ref oci.Ref) {
	var ds []v1.Descriptor
	switch r := ref.(type) {
	case *oci.Image:
		ds = r.Blobs()
	case *oci.Index:
		ds = r.Manifests()
	}
	for _, d := range ds {
		m.learn(d.Digest, d.Size)
	}
}

// call is one coalesced upstream fetch of a manifest (by digest or tag).
type call struct {
	done chan struct{}
	ref  oci.Ref
	err  error
}

// coalesce runs fn once for key among concurrent callers; the others wait
// for its result (as long as their ctx allows). fn runs under the
// mirror's context, not a caller's, so one caller leaving does not fail
// the others.
func (m *Mirror) coalesce(ctx context.Context, key string, fn func(ctx context.Context) (oci.Ref, error)) (oci.Ref, bool, error) {
	m.mu.Lock()
	if cl := m.calls[key]; cl != nil {
		m.mu.Unlock()
		m.stats.coalesced.Add(1)
		select {
		case <-cl.done:
			return cl.ref, true, cl.err
		case <-ctx.Done():
			return nil, true, ctx.Err()
		}
	}
	cl := &call{done: make(chan struct{})}
	m.calls[key] = cl
	m.mu.Unlock()
	fctx, cancel := context.WithTimeout(m.ctx, upstreamTimeout)
	cl.ref, cl.err = fn(fctx)
	cancel()
	m.mu.Lock()
	delete(m.calls, key)
	m.mu.Unlock()
	close(cl.done)
	return cl.ref, false, cl.err
}

// manifestByDigest is the manifest d: stored, or fetched once and stored.
func (m *Mirror) manifestByDigest(ctx context.Context, c *Client, d digest.Digest, w *recorder) (oci.Ref, error) {
	if ref, ok := m.storedManifest(ctx, d); ok {
		m.stats.hits.Add(1)
		w.note = "hit"
		return ref, nil
	}
	w.note = "miss"
	ref, joined, err := m.coalesce(ctx, "m\x00"+string(d), func(ctx context.Context) (oci.Ref, error) {
		m.stats.misses.Add(1)
		m.stats.upstreamGets.Add(1)
		ref, err := c.Read(ctx, string(d))
		if err != nil {
			return nil, err
		}
		return ref, m.storeManifest(ctx, ref.Descriptor(), ref.RawManifest())
	})
	if joined {
		w.note = "coalesced"
	}
	if err != nil {
		m.stats.upstreamErrors.Add(1)
	}
	return ref, err
}

// tagEntry is a tag as the store knows it.
type tagEntry struct {
	desc    v1.Descriptor
	checked time.Time // last confirmed upstream (zero: never, since start)
}

func (m *Mirror) tagTTL() time.Duration {
	if m.TagTTL > 0 {
		return m.TagTTL
	}
	return defaultTagTTL
}

// manifestByTag serves a tag: fresh from the store; revalidated with one
// HEAD when older than TagTTL (refetched only when the digest changed);
// stale when the upstream cannot answer; a 404 upstream passes through.
func (m *Mirror) manifestByTag(ctx context.Context, up *upstream, c *Client, tag string, w *recorder) (oci.Ref, bool, error) {
	name := up.indexName(c.Name(), tag)
	m.mu.Lock()
	e := m.tags[name]
	var cached tagEntry
	if e != nil {
		cached = *e
	}
	m.mu.Unlock()
	if e != nil && time.Since(cached.checked) < m.tagTTL() {
		if ref, ok := m.storedManifest(ctx, cached.desc.Digest); ok {
			m.stats.hits.Add(1)
			w.note = "hit"
			return ref, false, nil
		}
	}
	// Revalidate (or learn) the tag: one HEAD, coalesced.
	_, _, herr := m.coalesce(ctx, "t\x00"+name, func(ctx context.Context) (oci.Ref, error) {
		m.stats.upstreamHeads.Add(1)
		desc, err := c.Resolve(ctx, tag)
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		m.tags[name] = &tagEntry{desc: desc, checked: time.Now()}
		m.mu.Unlock()
		if e == nil || desc.Digest != cached.desc.Digest {
			if err := m.store.SetTag(ctx, name, desc); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	switch {
	case herr == nil:
	case errors.Is(herr, ErrNotFound):
		m.mu.Lock()
		delete(m.tags, name)
		m.mu.Unlock()
		return nil, false, herr
	case e != nil && isUpstreamDown(herr):
		if ref, ok := m.storedManifest(ctx, cached.desc.Digest); ok {
			w.note = "stale"
			return ref, true, nil
		}
		return nil, false, herr
	default:
		return nil, false, herr
	}
	m.mu.Lock()
	desc := m.tags[name].desc
	m.mu.Unlock()
	ref, err := m.manifestByDigest(ctx, c, desc.Digest, w)
	return ref, false, err
}

// isUpstreamDown reports failures that stale content may answer: the
// network, 5xx, 429, a stall, a deadline.
func isUpstreamDown(err error) bool {
	var ce *ClientError
	if errors.As(err, &ce) {
		return ce.Temporary()
	}
	return !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrUnauthorized) && !errors.Is(err, ErrDenied) &&
		!errors.Is(err, context.Canceled)
}

// listEntry is a tag list or referrers answer kept for ListTTL.
type listEntry struct {
	at    time.Time
	items []string
	index v1.Index
}

func (m *Mirror) listTTL() time.Duration {
	if m.ListTTL > 0 {
		return m.ListTTL
	}
	return defaultListTTL
}

// cachedList returns the entry under key: fresh, or fetched anew with
// fetch, or (the upstream down) the last answer, marked stale.
func (m *Mirror) cachedList(ctx context.Context, key string, fetch func(context.Context) (*listEntry, error)) (*listEntry, bool, error) {
	m.mu.Lock()
	e := m.lists[key]
	m.mu.Unlock()
	if e != nil && time.Since(e.at) < m.listTTL() {
		m.stats.hits.Add(1)
		return e, false, nil
	}
	var got *listEntry
	_, _, err := m.coalesce(ctx, "l\x00"+key, func(ctx context.Context) (oci.Ref, error) {
		m.stats.upstreamGets.Add(1)
		le, err := fetch(ctx)
		if err != nil {
			return nil, err
		}
		le.at = time.Now()
		m.mu.Lock()
		m.lists[key] = le
		m.mu.Unlock()
		return nil, nil
	})
	m.mu.Lock()
	got = m.lists[key]
	m.mu.Unlock()
	switch {
	case err == nil && got != nil:
		return got, false, nil
	case err != nil && e != nil && isUpstreamDown(err):
		m.stats.stale.Add(1)
		return e, true, nil
	case err == nil:
		return nil, false, fmt.Errorf("%w: list vanished", ErrProtocol)
	}
	return nil, false, err
}

func (m *Mirror) serveTags(w *recorder, r *http.Request, up *upstream, c *Client, name string) {
	e, stale, err := m.cachedList(r.Context(), "tags\x00"+up.key+"\x00"+c.Name(), func(ctx context.Context) (*listEntry, error) {
		tags, err := c.Tags(ctx)
		return &listEntry{items: tags}, err
	})
	if err != nil {
		status, code := upstreamStatus(err)
		writeError(w, status, code, "tags unavailable: "+printable(err.Error(), 300))
		return
	}
	if stale {
		w.Header()["Warning"] = []string{staleWarning}
	}
	servePage(w, r, apiPath(name, kindTags, ""), append([]string(nil), e.items...), func(page []string) any {
		return struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}{name, page}
	})
}

func (m *Mirror) serveReferrers(w *recorder, r *http.Request, up *upstream, c *Client, reference string) {
	if validateDigest(reference) != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, "invalid digest")
		return
	}
	filter := r.URL.Query().Get("artifactType")
	key := "referrers\x00" + up.key + "\x00" + c.Name() + "\x00" + reference + "\x00" + filter
	e, stale, err := m.cachedList(r.Context(), key, func(ctx context.Context) (*listEntry, error) {
		ds, err := c.Referrers(ctx, digest.Digest(reference), filter)
		return &listEntry{index: v1.Index{Versioned: specsVersioned(), MediaType: v1.MediaTypeImageIndex, Manifests: ds}}, err
	})
	if err != nil {
		status, code := upstreamStatus(err)
		writeError(w, status, code, "referrers unavailable: "+printable(err.Error(), 300))
		return
	}
	if stale {
		w.Header()["Warning"] = []string{staleWarning}
	}
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	writeJSON(w, r, v1.MediaTypeImageIndex, e.index)
}
