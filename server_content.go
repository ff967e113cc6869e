package registry

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry/internal/wire"
	"github.com/ocipull/registry/oci"
)

// checkClosure refuses blobs whose source says it does not hold them.
func checkClosure(blobs []storedBlob) error {
	for _, b := range blobs {
		if b.desc.Data != nil {
			continue
		}
		if h, ok := b.src.(interface{ Has(digest.Digest) bool }); ok && !h.Has(b.desc.Digest) {
			return fmt.Errorf("%w: %s %s is not in the ref's source (set AllowDangling to serve it as BLOB_UNKNOWN)", ErrNotFound, printable(b.desc.MediaType, 80), b.desc.Digest)
		}
	}
	return nil
}

// Tag points tag at the manifest d in repository, which must hold it
// (added with AddRef, by tag or digest); an existing tag moves. Safe while
// serving.
func (s *Server) Tag(repository, tag string, d digest.Digest) error {
	if err := validateTag(tag); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.repos[repository]
	if rs == nil || rs.manifests[d] == nil {
		return fmt.Errorf("tag %s:%s: %w: manifest %s", repository, tag, ErrNotFound, d)
	}
	rs.tags[tag] = d
	return nil
}

// Untag removes tag from repository (the content stays, reachable by
// digest). Safe while serving.
func (s *Server) Untag(repository, tag string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.repos[repository]
	if rs == nil || rs.tags[tag] == "" {
		return fmt.Errorf("untag %s:%s: %w", repository, tag, ErrNotFound)
	}
	delete(rs.tags, tag)
	return nil
}

// Remove deletes the manifest d from repository, with the tags that point
// at it and the blobs and child manifests no remaining manifest of the
// repository names, as a registry's delete and garbage collection would.
// Safe while serving: requests in flight finish with what they had.
func (s *Server) Remove(repository string, d digest.Digest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.repos[repository]
	if rs == nil || rs.manifests[d] == nil {
		return fmt.Errorf("remove %s@%s: %w", repository, d, ErrNotFound)
	}
	delete(rs.manifests, d)
	for t, td := range rs.tags {
		if td == d {
			delete(rs.tags, t)
		}
	}
	s.collect(rs)
	return nil
}

// collect drops what no tag and no remaining root manifest reaches.
func (s *Server) collect(rs *repoState) {
	reached := map[digest.Digest]bool{}
	var mark func(d digest.Digest)
	mark = func(d digest.Digest) {
		if reached[d] {
			return
		}
		reached[d] = true
		m := rs.manifests[d]
		if m == nil {
			return
		}
		ref, err := oci.NewRef(nil, m.raw, m.desc.MediaType, d)
		if err != nil {
			return
		}
		switch r := ref.(type) {
		case *oci.Image:
			for _, b := range r.Blobs() {
				reached[b.Digest] = true
			}
		case *oci.Index:
			for _, c := range r.Manifests() {
				mark(c.Digest)
			}
		}
	}
	// Roots: every manifest no other manifest names (what AddRef added).
	named := map[digest.Digest]bool{}
	for _, m := range rs.manifests {
		if ref, err := oci.NewRef(nil, m.raw, m.desc.MediaType, m.desc.Digest); err == nil {
			if ix, ok := ref.(*oci.Index); ok {
				for _, c := range ix.Manifests() {
					named[c.Digest] = true
				}
			}
		}
	}
	for d := range rs.manifests {
		if !named[d] {
			mark(d)
		}
	}
	for d := range rs.manifests {
		if !reached[d] {
			delete(rs.manifests, d)
		}
	}
	for d := range rs.blobs {
		if !reached[d] {
			delete(rs.blobs, d)
		}
	}
}

// RecordedRequest is what a [Server] saw and answered for one request,
// given to [Server.OnRequest].
type RecordedRequest struct {
	Method string
	Path   string
	Query  string
	// Header holds the request headers that matter to the protocol:
	// Accept, Range, If-None-Match and the scheme (never the credentials)
	// of Authorization.
	Header http.Header
	// User is the authenticated user ("" for anonymous or no auth).
	User     string
	Status   int
	Bytes    int64 // body bytes written
	Duration time.Duration
}

func recordOf(r *http.Request, rec *wire.Recorder, d time.Duration) RecordedRequest {
	h := http.Header{}
	for _, k := range []string{"Accept", "Range", "If-None-Match"} {
		if v := r.Header.Values(k); len(v) > 0 {
			h[k] = append([]string(nil), v...)
		}
	}
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, _, _ := strings.Cut(a, " ")
		h["Authorization"] = []string{scheme}
	}
	return RecordedRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: h, User: rec.User,
		Status: rec.Status, Bytes: rec.Bytes, Duration: d}
}
