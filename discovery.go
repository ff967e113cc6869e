package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cenkalti/backoff/v4"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// maxListPage caps one page of a tag, catalog or referrers list. Pages are
// JSON lists of short names; 4 MiB matches the manifest limit.
const maxListPage = oci.MaxManifestSize

// Resolve finds what reference (a tag or a digest) names, with one HEAD
// request: the descriptor's media type, digest and size. When the registry
// omits Docker-Content-Digest on HEAD (or sends no usable media type or
// length), Resolve falls back to one GET and computes them, verifying the
// digest when reference is one. Docker Hub does not count HEAD requests
// against pull limits, so no GET is made where a HEAD serves.
func (c *Client) Resolve(ctx context.Context, reference string) (v1.Descriptor, error) {
	c.init()
	if err := c.validate(); err != nil {
		return v1.Descriptor{}, err
	}
	var want digest.Digest
	if strings.Contains(reference, ":") {
		if err := validateDigest(reference); err != nil {
			return v1.Descriptor{}, err
		}
		want = digest.Digest(reference)
	} else if err := validateTag(reference); err != nil {
		return v1.Descriptor{}, err
	}
	var desc v1.Descriptor
	complete := false
	err := c.retry(ctx, func() error {
		resp, err := c.attempt(ctx, &request{method: http.MethodHead, url: c.url("manifests", reference), accept: manifestAccept, scope: c.pullScope()})
		if err != nil {
			return err
		}
		resp.Body.Close()
		d := digest.Digest(strings.TrimSpace(resp.Header.Get("Docker-Content-Digest")))
		mt, params, perr := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if oci.ValidateDigest(d) != nil || perr != nil || len(params) > 0 || !oci.IsManifestMediaType(mt) ||
			resp.ContentLength < 0 || resp.ContentLength > oci.MaxManifestSize {
			return nil // incomplete: fall back to GET
		}
		if want != "" && d != want {
			return backoff.Permanent(fmt.Errorf("manifest %s: %w: Docker-Content-Digest says %s", c.describeRef(reference), ErrDigestMismatch, d))
		}
		desc = v1.Descriptor{MediaType: mt, Digest: d, Size: resp.ContentLength}
		complete = true
		return nil
	})
	if err != nil || complete {
		return desc, err
	}
	raw, ct, err := c.fetchManifest(ctx, reference)
	if err != nil {
		return v1.Descriptor{}, err
	}
	ref, err := oci.NewRef(ctx, nil, raw, ct, want)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("%s: %w", c.describeRef(reference), err)
	}
	return ref.Descriptor(), nil
}

// Exists reports whether reference (a tag or a digest) names a manifest,
// with [Client.Resolve]. Not found — a 404 for the manifest or for the
// whole repository — is (false, nil); every other failure (unauthorized,
// network, protocol) is returned as the error, with false.
func (c *Client) Exists(ctx context.Context, reference string) (bool, error) {
	_, err := c.Resolve(ctx, reference)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// ReadPlatform reads the image for platform that tag and/or dgst name (as
// [Client.Read] does): an index selects its best-matching child
// ([oci.Index.SelectPlatform]), a plain image is checked against the
// platform through its config. The error wraps [ErrNoMatchingPlatform],
// listing what is offered, when nothing fits.
func (c *Client) ReadPlatform(ctx context.Context, tag, dgst string, platform v1.Platform) (*oci.Image, error) {
	ref, err := c.Read(ctx, tag, dgst)
	if err != nil {
		return nil, err
	}
	img, err := oci.ImageForPlatform(ref, platform)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.describe(tag, dgst), err)
	}
	return img, nil
}

// ListTags yields the repository's tags in the registry's (lexical) order,
// fetching pages of pageSize (0: the registry's default) as the loop asks
// for them and following Link: <...>; rel="next" headers (relative or
// absolute; a malformed Link is an error, never a silent truncation).
// Breaking out of the loop stops fetching. An error is yielded once, last.
func (c *Client) ListTags(ctx context.Context, pageSize int) iter.Seq2[string, error] {
	return c.list(ctx, c.validate, "/v2/"+c.Repository+"/tags/list", pageSize, c.pullScope(), "tags")
}

// Tags collects [Client.ListTags] with the registry's default page size.
func (c *Client) Tags(ctx context.Context) ([]string, error) {
	return collect(c.ListTags(ctx, 0))
}

// ListRepositories yields the registry's repositories from the catalog
// (/v2/_catalog, a Docker extension that many registries disable: a 404
// or 401 comes back as a [*ClientError] saying so), paginated like
// [Client.ListTags]. Only Host (and Scheme) of the client matter.
func (c *Client) ListRepositories(ctx context.Context, pageSize int) iter.Seq2[string, error] {
	hostOnly := func() error { return validateHost(c.Host) }
	return c.list(ctx, hostOnly, "/v2/_catalog", pageSize, catalogScope, "repositories")
}

// Repositories collects [Client.ListRepositories].
func (c *Client) Repositories(ctx context.Context) ([]string, error) {
	return collect(c.ListRepositories(ctx, 0))
}

// list is a paginated list endpoint whose pages are JSON objects with the
// names in the field field.
func (c *Client) list(ctx context.Context, validate func() error, path string, pageSize int, scope, field string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		c.init()
		if err := validate(); err != nil {
			yield("", err)
			return
		}
		u := c.scheme() + "://" + c.Host + path
		if pageSize > 0 {
			u += "?n=" + strconv.Itoa(pageSize)
		}
		c.paginate(ctx, u, scope, func(b []byte) ([]string, error) {
			var page map[string]json.RawMessage
			if err := json.Unmarshal(b, &page); err != nil {
				return nil, err
			}
			var names []string
			if raw, ok := page[field]; ok && string(raw) != "null" {
				if err := json.Unmarshal(raw, &names); err != nil {
					return nil, err
				}
			}
			return names, nil
		}, yield)
	}
}

func collect(seq iter.Seq2[string, error]) ([]string, error) {
	out := []string{}
	for s, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

// paginate fetches pages from first on, decoding each with decode and
// yielding its items, until no Link rel="next" remains.
func (c *Client) paginate(ctx context.Context, first, scope string, decode func([]byte) ([]string, error), yield func(string, error) bool) {
	next, err := url.Parse(first)
	if err != nil {
		yield("", err)
		return
	}
	seen := map[string]bool{}
	for next != nil {
		if seen[next.String()] {
			yield("", fmt.Errorf("%w: pagination loops back to %s", ErrProtocol, redactURL(next)))
			return
		}
		seen[next.String()] = true
		var items []string
		var link string
		cur := next
		err := c.retry(ctx, func() error {
			b, header, err := c.getCapped(ctx, &request{method: http.MethodGet, url: cur.String(), accept: "application/json", scope: scope},
				maxListPage, "GET "+redactURL(cur))
			if err != nil {
				return err
			}
			if items, err = decode(b); err != nil {
				return backoff.Permanent(fmt.Errorf("GET %s: %w: not a list: %v", redactURL(cur), ErrProtocol, err))
			}
			link = strings.Join(header.Values("Link"), ", ")
			return nil
		})
		if err != nil {
			yield("", err)
			return
		}
		for _, it := range items {
			if !yield(it, nil) {
				return
			}
		}
		if next, err = parseNextLink(link, cur); err != nil {
			yield("", fmt.Errorf("GET %s: %w", redactURL(cur), err))
			return
		}
	}
}

// parseNextLink finds the rel="next" target in a Link header (RFC 8288
// section 3):
//
//	Link       = #link-value
//	link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param )
//	link-param = token BWS [ "=" BWS ( token / quoted-string ) ]
//
// rel may hold several space-separated relation types. The target is
// resolved against base. No header, or no next link, returns nil; a
// header that breaks the grammar is an error wrapping ErrProtocol.
func parseNextLink(header string, base *url.URL) (*url.URL, error) {
	s := strings.TrimSpace(header)
	if s == "" {
		return nil, nil
	}
	bad := func(why string) error {
		return fmt.Errorf("%w: malformed Link header %q: %s", ErrProtocol, printable(header, 120), why)
	}
	for len(s) > 0 {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			break
		}
		if s[0] != '<' {
			return nil, bad("expected <")
		}
		end := strings.IndexByte(s, '>')
		if end < 0 {
			return nil, bad("unclosed <")
		}
		target := s[1:end]
		s = s[end+1:]
		isNext := false
		for {
			s = strings.TrimLeft(s, " \t")
			if s == "" || s[0] == ',' {
				break
			}
			if s[0] != ';' {
				return nil, bad("expected ; or ,")
			}
			s = strings.TrimLeft(s[1:], " \t")
			i := 0
			for i < len(s) && isTchar(s[i]) {
				i++
			}
			name := strings.ToLower(s[:i])
			if name == "" {
				return nil, bad("empty parameter name")
			}
			s = strings.TrimLeft(s[i:], " \t")
			var val string
			if strings.HasPrefix(s, "=") {
				s = strings.TrimLeft(s[1:], " \t")
				if strings.HasPrefix(s, `"`) {
					var b strings.Builder
					j := 1
					closed := false
					for j < len(s) {
						if s[j] == '\\' && j+1 < len(s) {
							b.WriteByte(s[j+1])
							j += 2
							continue
						}
						if s[j] == '"' {
							closed = true
							j++
							break
						}
						b.WriteByte(s[j])
						j++
					}
					if !closed {
						return nil, bad("unterminated quoted string")
					}
					val, s = b.String(), s[j:]
				} else {
					j := 0
					for j < len(s) && isTchar(s[j]) {
						j++
					}
					val, s = s[:j], s[j:]
				}
			}
			if name == "rel" {
				for _, r := range strings.Fields(strings.ToLower(val)) {
					if r == "next" {
						isNext = true
					}
				}
			}
		}
		if isNext {
			u, err := base.Parse(target)
			if err != nil || target == "" {
				return nil, bad("invalid target")
			}
			if u.Scheme != "http" && u.Scheme != "https" {
				return nil, bad("target is not http(s)")
			}
			return u, nil
		}
	}
	return nil, nil
}

// Referrers lists the manifests that refer to subject (OCI 1.1), filtered
// by artifactType when it is not empty. The decision table:
//
//	referrers API answers                     Referrers
//	200 with an image index                   its manifests; filtered here unless
//	                                          OCI-Filters-Applied names artifactType
//	200 with anything else                    falls back to the tag schema
//	404 with NAME_UNKNOWN                     the error (the repository is unknown)
//	other 404, 405, 406, 400                  falls back to the tag schema
//	any other failure                         the error
//
// The fallback reads the tag "<alg>-<encoded>" of subject's digest (the
// referrers tag schema); an unknown tag means no referrers (empty list).
func (c *Client) Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]v1.Descriptor, error) {
	c.init()
	if err := c.validate(); err != nil {
		return nil, err
	}
	if err := validateDigest(string(subject)); err != nil {
		return nil, err
	}
	u := c.url("referrers", string(subject))
	if artifactType != "" {
		u += "?artifactType=" + url.QueryEscape(artifactType)
	}
	var idx v1.Index
	filtered, fallback := false, false
	err := c.retry(ctx, func() error {
		b, header, err := c.getCapped(ctx, &request{method: http.MethodGet, url: u, accept: v1.MediaTypeImageIndex, scope: c.pullScope()},
			maxListPage, "referrers of "+string(subject))
		if err != nil {
			return err
		}
		idx = v1.Index{}
		if json.Unmarshal(b, &idx) != nil || idx.Manifests == nil && !strings.Contains(string(b), `"manifests"`) {
			fallback = true
			return nil
		}
		for _, f := range strings.Split(header.Get("OCI-Filters-Applied"), ",") {
			if strings.TrimSpace(f) == "artifactType" {
				filtered = true
			}
		}
		return nil
	})
	var ce *ClientError
	if errors.As(err, &ce) {
		switch {
		case ce.StatusCode == http.StatusNotFound && ce.HasCode(CodeNameUnknown):
		case ce.StatusCode == http.StatusNotFound, ce.StatusCode == http.StatusMethodNotAllowed,
			ce.StatusCode == http.StatusNotAcceptable, ce.StatusCode == http.StatusBadRequest:
			err, fallback = nil, true
		}
	}
	if err != nil {
		return nil, err
	}
	if fallback {
		return c.referrersByTag(ctx, subject, artifactType)
	}
	return filterReferrers(idx.Manifests, artifactType, filtered)
}

func filterReferrers(ms []v1.Descriptor, artifactType string, filtered bool) ([]v1.Descriptor, error) {
	out := []v1.Descriptor{}
	for i, d := range ms {
		if err := oci.ValidateDescriptor(d); err != nil {
			return nil, fmt.Errorf("referrers: manifests[%d]: %w", i, err)
		}
		if artifactType != "" && !filtered && d.ArtifactType != artifactType {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// referrersByTag is the referrers tag schema fallback.
func (c *Client) referrersByTag(ctx context.Context, subject digest.Digest, artifactType string) ([]v1.Descriptor, error) {
	tag := subject.Algorithm().String() + "-" + subject.Encoded()
	if len(tag) > 128 {
		tag = tag[:128]
	}
	ref, err := c.Read(ctx, tag, "")
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrManifestUnknown) {
		return []v1.Descriptor{}, nil
	}
	if err != nil {
		return nil, err
	}
	idx, ok := ref.(*oci.Index)
	if !ok {
		return nil, fmt.Errorf("referrers tag %s: %w: not an index", tag, ErrInvalidManifest)
	}
	return filterReferrers(idx.Manifests(), artifactType, false)
}
