package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ocipull/registry/internal/wire"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// Server is a read-only, in-memory OCI registry: an [http.Handler] that
// serves the refs added to it, spec-exact, for tests
// (httptest.NewServer(registry.NewServer())) and as the serving half of a
// pull-through cache.
//
// It answers the pull and discovery endpoints of the distribution spec:
// /v2/, manifests by tag or digest and blobs (GET and HEAD, blobs with
// Range), tag lists, referrers and the catalog, with the spec's status
// codes and JSON error bodies; every write gets 405 UNSUPPORTED. Manifests
// are held in memory; blob bytes are opened from the source of the ref
// that named them when a request asks, so a ref read by a [Client] and
// added here is served through to its registry, verified on the way.
//
// Set the exported fields before serving. AddRef and requests are safe to
// run concurrently.
type Server struct {
	// DisableReferrers makes the referrers endpoint answer 404, as
	// registries without the OCI 1.1 referrers API do, so that a client's
	// fallback to the referrers tag schema can be tested.
	DisableReferrers bool

	// Auth, when not nil, turns on authentication ([ServerAuth]).
	Auth *ServerAuth

	// AllowDangling lets AddRef accept a ref naming blobs its source does
	// not hold (to test a client against BLOB_UNKNOWN). Without it, AddRef
	// of a ref whose source can tell ([oci.Memory], a layout) fails at the
	// call, naming the missing descriptor.
	AllowDangling bool

	// OnRequest, when not nil, is called after every request with what the
	// server saw and answered ([RecordedRequest]); it must be safe for
	// concurrent use. Nil costs nothing.
	OnRequest func(RecordedRequest)

	mu    sync.RWMutex
	repos map[string]*repoState
}

type repoState struct {
	tags      map[string]digest.Digest
	manifests map[digest.Digest]*storedManifest
	blobs     map[digest.Digest]storedBlob
}

type storedManifest struct {
	desc        v1.Descriptor // media type, digest, size, artifact type
	etag        string        // the digest, quoted
	raw         []byte
	subject     *v1.Descriptor
	annotations map[string]string
}

type storedBlob struct {
	desc v1.Descriptor
	src  oci.Source
}

// NewServer returns an empty server.
func NewServer() *Server { return &Server{repos: map[string]*repoState{}} }

// AddRef makes ref and everything under it (child manifests, loaded now
// through the ref's source and verified, and blobs, opened only when
// requested) available in repository, and points tag at it when tag is
// not empty (otherwise the ref is reachable by digest only). A ref with a
// subject becomes one of its subject's referrers.
func (s *Server) AddRef(repository, tag string, ref oci.Ref) error {
	if err := validateRepository(repository); err != nil {
		return err
	}
	if tag != "" {
		if err := validateTag(tag); err != nil {
			return err
		}
	}
	var manifests []*storedManifest
	var blobs []storedBlob
	err := oci.Walk(context.Background(), ref, func(r oci.Ref) error {
		m := &storedManifest{desc: r.Descriptor(), raw: r.RawManifest(), etag: `"` + string(r.Digest()) + `"`}
		switch r := r.(type) {
		case *oci.Image:
			mf := r.Manifest()
			m.subject, m.annotations = mf.Subject, mf.Annotations
			if m.desc.ArtifactType == "" {
				m.desc.ArtifactType = mf.Config.MediaType
			}
			for _, b := range r.Blobs() {
				blobs = append(blobs, storedBlob{desc: b, src: r.Source()})
			}
		case *oci.Index:
			ix := r.Index()
			m.subject, m.annotations = ix.Subject, ix.Annotations
		}
		manifests = append(manifests, m)
		return nil
	})
	if err != nil {
		return fmt.Errorf("adding %s to %s: %w", ref.Digest(), repository, err)
	}
	if !s.AllowDangling {
		if err := checkClosure(blobs); err != nil {
			return fmt.Errorf("adding %s to %s: %w", ref.Digest(), repository, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repos == nil {
		s.repos = map[string]*repoState{}
	}
	rs := s.repos[repository]
	if rs == nil {
		rs = &repoState{tags: map[string]digest.Digest{}, manifests: map[digest.Digest]*storedManifest{}, blobs: map[digest.Digest]storedBlob{}}
		s.repos[repository] = rs
	}
	for _, m := range manifests {
		if _, ok := rs.manifests[m.desc.Digest]; !ok {
			rs.manifests[m.desc.Digest] = m
		}
	}
	for _, b := range blobs {
		if _, ok := rs.blobs[b.desc.Digest]; !ok {
			rs.blobs[b.desc.Digest] = b
		}
	}
	if tag != "" {
		rs.tags[tag] = ref.Digest()
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.OnRequest != nil {
		rec := wire.NewRecorder(w)
		start := time.Now()
		s.serve(rec, r)
		s.OnRequest(recordOf(r, rec, time.Since(start)))
		return
	}
	s.serve(w, r)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if s.Auth != nil && r.URL.Path == s.Auth.TokenPath() {
		s.Auth.ServeToken(w, r)
		return
	}
	rt, ok := wire.Preamble(w, r)
	if !ok {
		return
	}
	switch rt.Kind {
	case wire.Root:
		if s.authorize(w, r, "") {
			wire.WriteEmptyJSON(w, r)
		}
		return
	case wire.Catalog:
		if s.authorize(w, r, wire.CatalogScope) {
			s.serveCatalog(w, r)
		}
		return
	}
	name, kind, rest := rt.Name, rt.Kind, rt.Reference
	s.mu.RLock()
	rs := s.repos[name]
	s.mu.RUnlock()
	// Names of repositories held were validated by AddRef; only unknown
	// ones need the grammar, to tell NAME_INVALID from NAME_UNKNOWN.
	if rs == nil && !wire.ValidRepository(name) {
		wire.WriteError(w, http.StatusBadRequest, wire.CodeNameInvalid, "invalid repository name")
		return
	}
	if !s.authorize(w, r, wire.PullScope(name)) {
		return
	}
	if kind == wire.Referrers && s.DisableReferrers {
		wire.WriteError(w, http.StatusNotFound, wire.CodeUnsupported, "referrers API not supported")
		return
	}
	if rs == nil {
		wire.WriteError(w, http.StatusNotFound, wire.CodeNameUnknown, "repository name not known to registry")
		return
	}
	switch kind {
	case wire.Manifests:
		s.serveManifest(w, r, rs, name, rest)
	case wire.Blobs:
		s.serveBlob(w, r, rs, name, rest)
	case wire.Tags:
		s.serveTags(w, r, rs, name, rest)
	case wire.Referrers:
		s.serveReferrers(w, r, rs, name, rest)
	}
}

func (s *Server) serveManifest(w http.ResponseWriter, r *http.Request, rs *repoState, _ string, reference string) {
	// What AddRef stored was validated then: look up first, and consult
	// the grammar only to tell a malformed digest (400) from a miss (404).
	s.mu.RLock()
	d, byTag := rs.tags[reference]
	if !byTag {
		d = digest.Digest(reference)
	}
	m := rs.manifests[d]
	s.mu.RUnlock()
	if m == nil {
		if strings.Contains(reference, ":") && validateDigest(reference) != nil {
			wire.WriteError(w, http.StatusBadRequest, wire.CodeDigestInvalid, "invalid digest")
			return
		}
		wire.WriteError(w, http.StatusNotFound, wire.CodeManifestUnknown, "manifest unknown")
		return
	}
	h := w.Header()
	h["Content-Type"] = []string{m.desc.MediaType}
	h["Content-Length"] = []string{strconv.Itoa(len(m.raw))}
	h["Docker-Content-Digest"] = []string{string(m.desc.Digest)}
	h["Etag"] = []string{m.etag}
	if match := r.Header.Get("If-None-Match"); match != "" && wire.EtagMatches(match, string(m.desc.Digest)) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(m.raw)
	}
}

func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, rs *repoState, _ string, reference string) {
	d := digest.Digest(reference)
	s.mu.RLock()
	b, ok := rs.blobs[d]
	if !ok {
		// A manifest is also a blob of the repository.
		if m := rs.manifests[d]; m != nil {
			b, ok = storedBlob{desc: v1.Descriptor{MediaType: m.desc.MediaType, Digest: d, Size: m.desc.Size, Data: m.raw}}, true
		}
	}
	s.mu.RUnlock()
	if !ok {
		if validateDigest(reference) != nil {
			wire.WriteError(w, http.StatusBadRequest, wire.CodeDigestInvalid, "invalid digest")
			return
		}
		wire.WriteError(w, http.StatusNotFound, wire.CodeBlobUnknown, "blob unknown to registry")
		return
	}
	h := w.Header()
	wire.SetBlobIdentity(h, d)
	if match := r.Header.Get("If-None-Match"); match != "" && wire.EtagMatches(match, string(d)) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	size := b.desc.Size
	br, ok := wire.ParseRange(r.Header.Get("Range"), size)
	if !ok {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		wire.WriteError(w, http.StatusRequestedRangeNotSatisfiable, wire.CodeSizeInvalid, "range not satisfiable")
		return
	}
	if r.Method == http.MethodHead {
		wire.WriteBlobStatus(w, size, br)
		return
	}
	rc, verified, err := openBlobAt(r.Context(), b, br.First, br.Partial)
	if err != nil {
		status, code := http.StatusBadGateway, wire.CodeBlobUnknown
		if errors.Is(err, ErrNotFound) {
			status = http.StatusNotFound
		}
		wire.WriteError(w, status, code, "blob content unavailable")
		return
	}
	defer rc.Close()
	wire.WriteBlobStatus(w, size, br)
	// A copy that ends early (the source failed, or did not verify) leaves
	// the response shorter than Content-Length: net/http then closes the
	// connection and the client sees a broken body, never wrong bytes as
	// complete ones.
	if verified != nil {
		verified.WriteTo(w)
		return
	}
	if br.Partial {
		copyRange(w, rc, br.Last-br.First+1)
		return
	}
	// The stream holds exactly the blob: copying it directly lets an
	// *os.File go out through sendfile and a bytes.Reader through one
	// write, with no copy buffer.
	io.Copy(w, rc)
}

// copyRange copies the first n bytes of rc to w. A file goes through a
// LimitedReader, which net/http sends with sendfile; content in memory
// (a reader that writes itself out and has no file descriptor) writes
// itself to a writer that stops after n bytes: one write, not a copy
// through a 32 KiB buffer, which costs a ranged client 7% on loopback.
func copyRange(w io.Writer, rc io.Reader, n int64) {
	_, hasFD := rc.(syscall.Conn)
	if wt, ok := rc.(io.WriterTo); ok && !hasFD {
		wt.WriteTo(&cappedWriter{w: w, n: n})
		return
	}
	io.Copy(w, io.LimitReader(rc, n))
}

// cappedWriter passes on the first n bytes written to it, then refuses
// (io.ErrShortWrite ends the writer-to).
type cappedWriter struct {
	w io.Writer
	n int64
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) <= c.n {
		k, err := c.w.Write(p)
		c.n -= int64(k)
		return k, err
	}
	k, err := c.w.Write(p[:c.n])
	c.n -= int64(k)
	if err == nil {
		err = io.ErrShortWrite
	}
	return k, err
}

// openBlobAt opens b's content from offset. Whole, non-seekable streams
// come back wrapped in a VerifyReader (returned as verified too);
// seekable in-memory and on-disk content, verified when it was stored and
// checked for its length here, is served as it is, through sendfile where
// the platform has it. A whole (not partial) stream yields exactly the
// blob's bytes from offset.
func openBlobAt(ctx context.Context, b storedBlob, offset int64, partial bool) (io.ReadCloser, *oci.VerifyReader, error) {
	if b.desc.Data != nil {
		return io.NopCloser(bytes.NewReader(b.desc.Data[offset:])), nil, nil
	}
	if b.src == nil {
		return nil, nil, oci.ErrNotFound
	}
	if offset > 0 {
		if rsrc, ok := b.src.(oci.RangeSource); ok {
			rc, err := rsrc.BlobAt(ctx, b.desc, offset)
			return rc, nil, err
		}
	}
	rc, err := b.src.Blob(ctx, b.desc)
	if err != nil {
		return nil, nil, err
	}
	if seeker, ok := rc.(io.Seeker); ok {
		// Stored content of the wrong length is refused rather than served
		// under the descriptor's digest.
		end, err := seeker.Seek(0, io.SeekEnd)
		if err == nil && end != b.desc.Size {
			err = fmt.Errorf("blob %s: %w: stored content is %d bytes, descriptor says %d", b.desc.Digest, oci.ErrSizeMismatch, end, b.desc.Size)
		}
		if err == nil {
			_, err = seeker.Seek(offset, io.SeekStart)
		}
		if err != nil {
			rc.Close()
			return nil, nil, err
		}
		return rc, nil, nil
	}
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, rc, offset); err != nil {
			rc.Close()
			return nil, nil, err
		}
		return rc, nil, nil
	}
	if partial {
		return rc, nil, nil
	}
	vr, err := oci.NewVerifyReader(rc, b.desc)
	if err != nil {
		rc.Close()
		return nil, nil, err
	}
	return vr, vr, nil
}

func (s *Server) serveTags(w http.ResponseWriter, r *http.Request, rs *repoState, name, _ string) {
	s.mu.RLock()
	tags := make([]string, 0, len(rs.tags))
	for t := range rs.tags {
		tags = append(tags, t)
	}
	s.mu.RUnlock()
	wire.ServePage(w, r, wire.Path(name, wire.Tags, ""), tags, func(page []string) any {
		return struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}{name, page}
	})
}

func (s *Server) serveCatalog(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	names := make([]string, 0, len(s.repos))
	for name := range s.repos {
		names = append(names, name)
	}
	s.mu.RUnlock()
	wire.ServePage(w, r, wire.CatalogPath, names, func(page []string) any {
		return struct {
			Repositories []string `json:"repositories"`
		}{page}
	})
}

func (s *Server) serveReferrers(w http.ResponseWriter, r *http.Request, rs *repoState, _ string, reference string) {
	if validateDigest(reference) != nil {
		wire.WriteError(w, http.StatusBadRequest, wire.CodeDigestInvalid, "invalid digest")
		return
	}
	d := digest.Digest(reference)
	filter := r.URL.Query().Get("artifactType")
	s.mu.RLock()
	refs := []v1.Descriptor{}
	for _, m := range rs.manifests {
		if m.subject == nil || m.subject.Digest != d {
			continue
		}
		if filter != "" && m.desc.ArtifactType != filter {
			continue
		}
		desc := m.desc
		desc.Annotations = m.annotations
		refs = append(refs, desc)
	}
	s.mu.RUnlock()
	sort.Slice(refs, func(i, j int) bool { return refs[i].Digest < refs[j].Digest })
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	wire.WriteJSON(w, r, v1.MediaTypeImageIndex, v1.Index{
		Versioned: specsVersioned(), MediaType: v1.MediaTypeImageIndex, Manifests: refs,
	})
}
