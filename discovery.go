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
	"slices"
	"strings"

	"github.com/ocipull/registry/internal/wire"

	"github.com/cenkalti/backoff/v4"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// Resolve finds what reference (a tag, a digest or tag@digest, as for
// [Client.Read]) names, with one HEAD request: the descriptor's media
// type, digest and size. When the registry omits Docker-Content-Digest on
// HEAD (or sends no usable media type or length), Resolve falls back to
// one GET and computes them, verifying the digest when reference has one.
// Docker Hub does not count HEAD requests against pull limits, so no GET
// is made where a HEAD serves.
func (c *Client) Resolve(ctx context.Context, reference string) (v1.Descriptor, error) {
	if _, err := c.start(); err != nil {
		return v1.Descriptor{}, err
	}
	tag, dgst, err := splitReference(reference)
	if err != nil {
		return v1.Descriptor{}, err
	}
	fetchBy, want := dgst, digest.Digest(dgst)
	if tag != "" {
		fetchBy = tag
	}
	var desc v1.Descriptor
	err = c.reg.onEndpoints(ctx, capabilityFor(fetchBy), func(t *transport) error {
		var err error
		desc, err = c.resolveOn(ctx, t, reference, fetchBy, want)
		return err
	})
	return desc, err
}

// resolveOn is Resolve on one endpoint.
func (c *Client) resolveOn(ctx context.Context, t *transport, reference, fetchBy string, want digest.Digest) (v1.Descriptor, error) {
	req := &request{method: http.MethodHead, url: t.registryURL(wire.Path(c.name, wire.Manifests, fetchBy), ""),
		accept: manifestAccept, scope: c.scope}
	var desc v1.Descriptor
	var bo backoff.BackOff
	err := t.retry(ctx, &bo, func() error {
		resp, err := t.attempt(ctx, req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		desc = headDescriptor(resp)
		if desc.Digest != "" && want != "" && desc.Digest != want {
			return backoff.Permanent(fmt.Errorf("manifest %s: %w: Docker-Content-Digest says %s", c.describeRef(reference), oci.ErrDigestMismatch, desc.Digest))
		}
		return nil
	})
	var ce *ClientError
	if errors.As(err, &ce) && ce.StatusCode == http.StatusNotFound && len(ce.Errors) == 0 {
		// A HEAD's 404 has no body to say what is unknown (the
		// repository, or the tag or digest in it): one GET does.
		if _, _, gerr := c.fetchManifest(ctx, t, fetchBy); gerr != nil && errors.Is(gerr, ErrNotFound) {
			return v1.Descriptor{}, gerr
		}
		return desc, err
	}
	if err != nil || desc.Digest != "" {
		return desc, err
	}
	raw, ct, err := c.fetchManifest(ctx, t, fetchBy)
	if err != nil {
		return v1.Descriptor{}, err
	}
	ref, err := oci.NewRef(nil, raw, ct, want)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("%s: %w", c.describeRef(reference), err)
	}
	return ref.Descriptor(), nil
}

// headDescriptor reads the descriptor a HEAD answer states, or the zero
// descriptor when it is incomplete (no valid digest, media type or length).
func headDescriptor(resp *http.Response) v1.Descriptor {
	d := digest.Digest(strings.TrimSpace(resp.Header.Get("Docker-Content-Digest")))
	mt, params, perr := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if oci.ValidateDigest(d) != nil || perr != nil || len(params) > 0 || !slices.Contains(manifestMediaTypes, mt) ||
		resp.ContentLength < 0 || resp.ContentLength > oci.MaxManifestSize {
		return v1.Descriptor{}
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: resp.ContentLength}
}

// ReadPlatform reads the image for platform that reference names (as
// [Client.Read] does): an index selects its best-matching child
// ([oci.Index.SelectPlatform]), a plain image is checked against the
// platform through its config. The error wraps [oci.ErrNoMatchingPlatform],
// listing what is offered, when nothing fits.
func (c *Client) ReadPlatform(ctx context.Context, reference string, platform v1.Platform) (*oci.Image, error) {
	ref, err := c.Read(ctx, reference)
	if err != nil {
		return nil, err
	}
	img, err := oci.ImageForPlatform(ctx, ref, platform)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.describeRef(reference), err)
	}
	return img, nil
}

// ListTags yields the repository's tags in the registry's (lexical) order,
// fetching pages of pageSize (0: the registry's default) as the loop asks
// for them and following Link: <...>; rel="next" headers. Breaking out of
// the loop stops fetching. An error is yielded once, last. A listing is
// bounded: by MaxPages and MaxListItems ([oci.ErrTooLarge]), and a Link that
// leaves the registry's origin, loops back to a page already read or
// does not advance "last" is an error wrapping [ErrProtocol], never a
// silent truncation.
func (c *Client) ListTags(ctx context.Context, pageSize int) iter.Seq2[string, error] {
	start := func() (*transport, error) {
		if _, err := c.start(); err != nil {
			return nil, err
		}
		return c.reg.listTransport(), nil
	}
	return c.reg.list(ctx, start, wire.Path(c.name, wire.Tags, ""), pageSize, c.scope, "tags")
}

// Tags collects [Client.ListTags] with the registry's default page size.
func (c *Client) Tags(ctx context.Context) ([]string, error) {
	return collect(c.ListTags(ctx, 0))
}

// ListRepositories yields the registry's repositories from the catalog
// (/v2/_catalog, a Docker extension that many registries disable: a 404
// or 401 comes back as a [*ClientError] saying so), paginated and bounded
// like [Client.ListTags]. Only Host (and Scheme) of the client matter.
func (r *Registry) ListRepositories(ctx context.Context, pageSize int) iter.Seq2[string, error] {
	hostOnly := func() (*transport, error) {
		if err := validateHost(r.Host); err != nil {
			return nil, err
		}
		r.init()
		if err := r.validateEndpoints(); err != nil {
			return nil, err
		}
		return r.listTransport(), nil
	}
	return r.list(ctx, hostOnly, wire.CatalogPath, pageSize, wire.CatalogScope, "repositories")
}

// Repositories collects [Registry.ListRepositories].
func (r *Registry) Repositories(ctx context.Context) ([]string, error) {
	return collect(r.ListRepositories(ctx, 0))
}

// list is a paginated list endpoint whose pages are JSON objects with the
// names in the field field.
func (r *Registry) list(ctx context.Context, start func() (*transport, error), path string, pageSize int, scope, field string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		t, err := start()
		if err != nil {
			yield("", err)
			return
		}
		p := &pager{t: t, scope: scope, field: field, crossOrigin: r.AllowCrossOriginLinks}
		p.run(ctx, t.registryURL(path, wire.PageQuery(pageSize, "")), yield)
	}
}

// listTransport is where listings and referrers go: the registry, or with
// MirrorsOnly the first mirror that may resolve tags (the first mirror if
// none may).
func (r *Registry) listTransport() *transport {
	if !r.MirrorsOnly {
		return r.t
	}
	for i, m := range r.mirrors {
		if r.Mirrors[i].can(CapabilityResolve) {
			return m
		}
	}
	return r.mirrors[0]
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
	if _, err := c.start(); err != nil {
		return nil, err
	}
	t := c.reg.listTransport()
	if err := validateDigest(string(subject)); err != nil {
		return nil, err
	}
	query := ""
	if artifactType != "" {
		query = "artifactType=" + url.QueryEscape(artifactType)
	}
	req := &request{method: http.MethodGet, url: t.registryURL(wire.Path(c.name, wire.Referrers, string(subject)), query),
		accept: v1.MediaTypeImageIndex, scope: c.scope}
	var idx v1.Index
	filtered, fallback := false, false
	b, header, err := t.get(ctx, req, maxListPage, "referrers of "+string(subject))
	if err == nil {
		if json.Unmarshal(b, &idx) != nil || idx.Manifests == nil && !strings.Contains(string(b), `"manifests"`) {
			fallback = true
		}
		for _, f := range strings.Split(header.Get("OCI-Filters-Applied"), ",") {
			filtered = filtered || strings.TrimSpace(f) == "artifactType"
		}
	}
	var ce *ClientError
	if errors.As(err, &ce) {
		switch {
		case ce.StatusCode == http.StatusNotFound && ce.hasCode(wire.CodeNameUnknown):
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
	ref, err := c.Read(ctx, tag)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrManifestUnknown) {
		return []v1.Descriptor{}, nil
	}
	if err != nil {
		return nil, err
	}
	idx, ok := ref.(*oci.Index)
	if !ok {
		return nil, fmt.Errorf("referrers tag %s: %w: not an index", tag, oci.ErrInvalidManifest)
	}
	return filterReferrers(idx.Manifests(), artifactType, false)
}
