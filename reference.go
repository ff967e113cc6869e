package registry

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry/internal/wire"
)

// Reference is a parsed image reference, host[:port]/name[:tag][@digest],
// as users type it. At least one of Tag and Digest is set after
// [ParseReference] (a bare name gets the tag "latest").
type Reference struct {
	// Host is the registry's host[:port]; Docker Hub is "registry-1.docker.io".
	Host string
	// Repository is the repository name; Docker Hub's one-segment names
	// get "library/".
	Repository string
	// Tag is the tag, or empty when only a digest was given.
	Tag string
	// Digest is the digest, or empty.
	Digest digest.Digest
}

// ParseReference parses a reference as users type it:
//
//	ubuntu                       registry-1.docker.io/library/ubuntu:latest
//	user/app:1.0                 registry-1.docker.io/user/app:1.0
//	ghcr.io/o/r@sha256:...       ghcr.io/o/r, by digest only
//	localhost:5000/r:t@sha256:.. both tag and digest (fetched by tag, verified by digest)
//
// The first component is a host when it contains "." or ":" or is
// "localhost"; otherwise the reference is on Docker Hub. Names must match
// the distribution spec's grammar (lower case), tags too, digests sha256 or
// sha512; host plus name is at most 255 characters.
// Errors wrap [ErrInvalidReference].
func ParseReference(s string) (Reference, error) {
	var r Reference
	orig := s
	bad := func(why string) (Reference, error) {
		return Reference{}, fmt.Errorf("%w: %q: %s", ErrInvalidReference, printable(orig, 120), why)
	}
	if s == "" {
		return bad("empty")
	}
	if strings.Contains(s, "://") {
		return bad("a reference has no scheme; write host/name:tag")
	}
	if i := strings.IndexByte(s, '@'); i >= 0 {
		r.Digest = digest.Digest(s[i+1:])
		s = s[:i]
		if err := validateDigest(string(r.Digest)); err != nil {
			return bad("invalid digest")
		}
	}
	// A tag follows the last colon, if that colon is after the last slash
	// (a colon before it belongs to host:port).
	if i := strings.LastIndexByte(s, ':'); i >= 0 && i > strings.LastIndexByte(s, '/') {
		r.Tag = s[i+1:]
		s = s[:i]
		if !wire.ValidTag(r.Tag) {
			return bad("invalid tag")
		}
	}
	host, name := "", s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		first := s[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" || strings.HasPrefix(first, "[") {
			host, name = first, s[i+1:]
		}
	}
	if host == "" || host == dockerHubDomain || host == "index."+dockerHubDomain {
		host = dockerHubRegistry
		name = RepositoryName(host, name)
	}
	if err := validateHost(host); err != nil {
		return bad("invalid host")
	}
	if !wire.ValidRepository(name) {
		return bad("invalid repository name (lower-case letters, digits and separators . _ __ -)")
	}
	if len(host)+1+len(name) > wire.MaxRepositoryLength {
		return bad("host and name longer than 255 characters")
	}
	r.Host, r.Repository = host, name
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// String formats the reference as host/name[:tag][@digest], the way
// containerd names images: Docker Hub's host is "docker.io"
// ("docker.io/library/alpine:3.20"), where Host says where the registry
// really is.
func (r Reference) String() string {
	host := r.Host
	if RegistryName(host) == dockerHubDomain {
		host = dockerHubDomain
	}
	s := host + "/" + r.Repository
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + string(r.Digest)
	}
	return s
}

// TagOrDigest is the part of the reference after the repository, in the
// form [Client.Read], [Client.Resolve] and [oci.Layout.Read] take: the
// tag, the digest, or tag@digest.
func (r Reference) TagOrDigest() string {
	if r.Tag != "" && r.Digest != "" {
		return r.Tag + "@" + string(r.Digest)
	}
	return r.Tag + string(r.Digest)
}

// Registry returns a new [Registry] for the reference's host. For
// loopback hosts (localhost, 127.0.0.0/8, ::1) it tries HTTPS and falls
// back to plain HTTP, for the registry's lifetime, when the registry
// answers the TLS handshake in plain HTTP, as Docker and containerd do for
// localhost; set Scheme on the result to choose one, and fill in the other
// fields (Credentials, Transport, ...) before first use. Programs reading
// several references of one host should make one Registry and take
// [Registry.Repository] handles from it, so that they share connections
// and tokens.
func (r Reference) Registry() *Registry {
	return &Registry{Host: r.Host, httpFallback: isLoopbackHost(r.Host)}
}

// Client returns a client for the reference's repository on a new
// [Registry] (see [Reference.Registry]); configure it through
// [Client.Registry] before first use.
func (r Reference) Client() *Client {
	return r.Registry().Repository(r.Repository)
}

// isLoopbackHost reports whether host[:port] names the loopback interface.
func isLoopbackHost(host string) bool { return isLoopback(hostOnly(host)) }
