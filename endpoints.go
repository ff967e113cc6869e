package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// Capability is what an [Endpoint] may be asked for.
type Capability uint8

const (
	// CapabilityPull: manifests and blobs by digest. Whatever a mirror
	// serves this way is verified against the digest, so any mirror can
	// be trusted with it.
	CapabilityPull Capability = 1 << iota
	// CapabilityResolve: manifests by tag (GET and HEAD). The mirror is
	// then trusted to say what a tag names.
	CapabilityResolve
)

// Endpoint is a mirror: another registry API a [Client] tries, in order,
// before the registry itself (the distribution spec's registry proxying;
// containerd's hosts.toml "host" entries).
//
// Requests to an endpoint carry the ns query parameter naming the
// registry (Registry.Host; "docker.io" for Docker Hub), so that one mirror
// can serve several registries. Credentials are looked up with the
// endpoint's own host: registry credentials never reach a mirror unless
// the CredentialSource returns them for the mirror's host
// ([StaticCredentials] and [IdentityToken] never do).
type Endpoint struct {
	// Scheme is "https" or "http". If empty, "https".
	Scheme string
	// Host is the endpoint's host[:port].
	Host string
	// Path is the API root, the path that replaces "/v2" in every request
	// (as in "/prefix/v2"). If empty, "/v2".
	Path string
	// Capabilities are what the endpoint is asked for. Zero means
	// CapabilityPull|CapabilityResolve.
	Capabilities Capability
	// TLSConfig, when not nil, configures TLS to this endpoint (its CA,
	// a client certificate). The registry's Registry.TLSConfig never
	// applies to a mirror.
	TLSConfig *tls.Config
	// Header is added to every request to this endpoint's origin, token
	// requests to a realm there included; never to another origin (a
	// realm elsewhere, a redirect target). The client's own headers
	// (Accept, Range, User-Agent, Authorization when it authenticates) win.
	Header http.Header
	// DialTimeout bounds each connection attempt to this endpoint, so a
	// mirror that drops packets falls through sooner. Zero means 30 s.
	DialTimeout time.Duration
}

// ParseEndpoint reads a mirror's URL as users write it:
// "mirror.example.com", "https://mirror.example.com:5000" or
// "http://10.0.0.5/prefix". A path is the mirror's API root without or
// with its "/v2" ("/prefix" and "/prefix/v2" are the same endpoint), as
// containerd reads hosts.toml. No query, fragment or user information.
func ParseEndpoint(rawURL string) (Endpoint, error) {
	ep, err := parseEndpointURL(rawURL, false)
	if err != nil {
		return Endpoint{}, fmt.Errorf("mirror %q: %w", printable(rawURL, 200), err)
	}
	return ep, nil
}

// parseEndpointURL reads an endpoint's URL, for ParseEndpoint and
// hosts.toml alike: "https://" when it names no scheme; the path is the
// API root, "/v2" appended unless the path has it or override says the
// path is the root itself ("/" for an empty one). Errors wrap
// ErrInvalidReference.
func parseEndpointURL(raw string, override bool) (Endpoint, error) {
	s := strings.TrimSpace(raw)
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return Endpoint{}, fmt.Errorf("%w: %v", ErrInvalidReference, stripURLError(err))
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return Endpoint{}, fmt.Errorf("%w: scheme must be https or http", ErrInvalidReference)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return Endpoint{}, fmt.Errorf("%w: want scheme://host[:port][/path], without user, query or fragment", ErrInvalidReference)
	}
	if err := validateHost(u.Host); err != nil {
		return Endpoint{}, err
	}
	p := u.Path
	switch {
	case p == "" || p == "/":
		p = "/v2"
		if override {
			p = "/"
		}
	default:
		p = path.Clean("/" + p)
		if !override && !strings.HasSuffix(p, "/v2") {
			p += "/v2"
		}
	}
	return Endpoint{Scheme: u.Scheme, Host: u.Host, Path: p}, nil
}

// String is the endpoint's base URL: scheme://host/path.
func (e Endpoint) String() string {
	u := url.URL{Scheme: e.Scheme, Host: e.Host, Path: e.Path}
	if u.Scheme == "" {
		u.Scheme = "https"
	}
	if u.Path == "" {
		u.Path = "/v2"
	}
	return u.String()
}

func (e Endpoint) can(c Capability) bool {
	caps := e.Capabilities
	if caps == 0 {
		caps = CapabilityPull | CapabilityResolve
	}
	return caps&c != 0
}

// validateEndpoints checks the Client's mirrors and TLS fields.
func (r *Registry) validateEndpoints() error {
	for i, m := range r.Mirrors {
		if err := m.validate(r.Transport != nil); err != nil {
			return fmt.Errorf("Mirrors[%d]: %w", i, err)
		}
	}
	if r.TLSConfig != nil && r.Transport != nil {
		return fmt.Errorf("registry: Registry.TLSConfig is set with Registry.Transport: configure TLS in the Transport instead")
	}
	if r.DialTimeout != 0 && r.Transport != nil {
		return fmt.Errorf("registry: Registry.DialTimeout is set with Registry.Transport: configure dialing in the Transport instead")
	}
	if err := validateHeader(r.Header); err != nil {
		return fmt.Errorf("%w: Registry.Header: %v", ErrInvalidReference, err)
	}
	if r.MirrorsOnly && len(r.Mirrors) == 0 {
		return fmt.Errorf("registry: Registry.MirrorsOnly is set without Mirrors: there is nowhere to pull from")
	}
	return nil
}

// validate checks one mirror's fields; ownTransport says the Client has
// a caller's Transport, which its TLS and dial settings cannot reach.
func (m Endpoint) validate(ownTransport bool) error {
	if s := m.Scheme; s != "" && s != "https" && s != "http" {
		return fmt.Errorf("%w: scheme %q: want https or http", ErrInvalidReference, printable(s, 20))
	}
	if err := validateHost(m.Host); err != nil {
		return err
	}
	if m.Path != "" && (!strings.HasPrefix(m.Path, "/") || strings.ContainsAny(m.Path, "?#")) {
		return fmt.Errorf("%w: path %q: want an absolute path", ErrInvalidReference, printable(m.Path, 80))
	}
	if m.TLSConfig != nil && ownTransport {
		return errors.New("TLSConfig is set with Registry.Transport: configure TLS in the Transport instead")
	}
	if m.DialTimeout != 0 && ownTransport {
		return errors.New("DialTimeout is set with Registry.Transport: configure dialing in the Transport instead")
	}
	if err := validateHeader(m.Header); err != nil {
		return fmt.Errorf("%w: Header: %v", ErrInvalidReference, err)
	}
	return nil
}

// validateHeader checks extra header fields: names are tokens, values
// carry no control characters but tab (so none can split a request).
func validateHeader(h http.Header) error {
	for name, values := range h {
		if name == "" {
			return errors.New("an empty field name")
		}
		for i := 0; i < len(name); i++ {
			if !isTchar(name[i]) {
				return fmt.Errorf("field name %q is not a token", printable(name, 60))
			}
		}
		for _, v := range values {
			for i := 0; i < len(v); i++ {
				if b := v[i]; b < ' ' && b != '\t' || b == 0x7f {
					return fmt.Errorf("field %s: value has a control character", name)
				}
			}
		}
	}
	return nil
}

// route is the transports an operation may use, in order: the mirrors
// that have capability, then the registry unless MirrorsOnly.
func (r *Registry) route(capability Capability) []*transport {
	ts := make([]*transport, 0, len(r.mirrors)+1)
	for i, m := range r.mirrors {
		if r.Mirrors[i].can(capability) {
			ts = append(ts, m)
		}
	}
	if !r.MirrorsOnly {
		ts = append(ts, r.t)
	}
	return ts
}

// capabilityFor is what fetching reference (a tag or a digest) needs.
func capabilityFor(reference string) Capability {
	if strings.Contains(reference, ":") {
		return CapabilityPull
	}
	return CapabilityResolve
}

// onEndpoints runs op on each endpoint that has capability, in order,
// until one succeeds. A mirror's failure, whatever it is (network, 5xx,
// 404, a refused login, bytes that do not verify), falls through to the
// next endpoint; the caller's cancellation does not. The final error is
// the last endpoint's, naming the failures before it.
func (r *Registry) onEndpoints(ctx context.Context, capability Capability, op func(t *transport) error) error {
	if len(r.mirrors) == 0 && !r.MirrorsOnly {
		return op(r.t) // the registry alone: no list to build
	}
	ts := r.route(capability)
	if len(ts) == 0 {
		what := "pull by digest"
		if capability == CapabilityResolve {
			what = "resolve tags"
		}
		return fmt.Errorf("%w: no mirror may %s and MirrorsOnly forbids the registry", ErrUnsupported, what)
	}
	var tried []string
	for _, t := range ts[:len(ts)-1] {
		err := op(t)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		tried = append(tried, err.Error())
	}
	err := op(ts[len(ts)-1])
	if err != nil && len(tried) > 0 {
		return fmt.Errorf("%w (tried first: %s)", err, strings.Join(tried, "; "))
	}
	return err
}
