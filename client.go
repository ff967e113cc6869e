package registry

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ocipull/registry/internal/wire"

	"github.com/cenkalti/backoff/v4"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// Registry is one registry origin and everything a program shares when it
// reads from it: the HTTP transport and its connection pool, the
// endpoints (mirrors) in front of it, the token cache (keyed by realm,
// service and scope, so a token is reused by every request its scope
// covers), the credentials, TLS and dial settings, the retry policy and
// the range budget. Repositories are light handles on it
// ([Registry.Repository]): a program reading 50 repositories of one
// registry opens at most MaxConnsPerHost connections and asks for one
// token per distinct scope.
//
// Its zero value is not useful until Host is set; every other field's zero
// value works. Set the fields before first use and do not change or copy a
// Registry after that; its methods are safe for concurrent use.
//
// What a Registry and its repositories guarantee:
//   - Every byte is verified: manifests against the digest asked for (or,
//     by tag, against Docker-Content-Digest when the registry sends it),
//     blobs while they stream ([oci.VerifyReader]).
//   - Transient failures (network errors, 408, 429, 5xx but 501 and 505, a
//     stalled connection) are retried with the policy from GetBackOff,
//     honouring Retry-After; nothing is retried past the context's deadline.
//   - Broken blob downloads resume with Range requests.
//   - Requests go only to Scheme://Host/v2/ paths built from validated
//     names (and the same paths under each mirror's API root, see
//     Mirrors), and to the redirects and token realms those answer with;
//     the Authorization header is sent only to the host and port it is
//     for, and credentials are looked up per host.
type Registry struct {
	// Transport makes the HTTP requests. If nil, the client makes its own
	// transport (a clone of http.DefaultTransport that keeps up to 64 idle
	// connections per host, so parallel blob reads reuse connections).
	Transport http.RoundTripper

	// GetBackOff returns the retry policy for one operation (one manifest or
	// token request, or one blob stream's resumptions). If nil, the default
	// is exponential: 250 ms doubling to at most 8 s, jittered by half,
	// at most 5 retries and 60 s in all. Return &backoff.StopBackOff{} to
	// turn retries off. Retry-After replaces a shorter wait.
	GetBackOff func() backoff.BackOff

	// RetryNotify, if not nil, is called before each retry with the error
	// and the wait.
	RetryNotify backoff.Notify

	// UserAgent is sent with every request. If empty, "ocipull-registry".
	UserAgent string

	// Scheme is "https" or "http". If empty, "https".
	Scheme string

	// Host is the registry's host[:port], as in "ghcr.io" or
	// "127.0.0.1:5000". Docker Hub is "registry-1.docker.io".
	Host string

	// StallTimeout is how long a response may go without its headers, or
	// with less than 1 KiB of body, before the connection counts as stalled
	// ([ErrStalled]) and is retried or resumed. Zero means 30 s; a negative
	// value turns stall detection off.
	StallTimeout time.Duration

	// MaxRetryAfter caps the Retry-After the client waits for: a registry
	// asking for longer fails the operation with a [*ClientError] whose
	// RetryAfter says how long. Zero means 2 minutes.
	MaxRetryAfter time.Duration

	// Credentials supplies credentials for the registry host. If nil, the
	// client pulls anonymously (an anonymous token where the registry asks
	// for one). See [StaticCredentials], [IdentityToken] and [DockerConfig].
	Credentials CredentialSource

	// MaxConnsPerHost caps the TCP connections per host of the client's own
	// transport (it is ignored when Transport is set). Zero means no cap. Set
	// it to the number of reads you run in parallel to hold connections to
	// that number: without a cap, Go's transport can dial an extra
	// connection when a request races a connection on its way back to the
	// idle pool.
	MaxConnsPerHost int

	// AllowBasicOverHTTP permits sending Basic credentials over plain HTTP
	// to the registry's own host. Loopback hosts are always permitted;
	// other hosts, token realms included, never.
	AllowBasicOverHTTP bool

	// RangeParallelism is how many bounded Range requests one large blob
	// (64 MiB and more) may have in flight when its single stream turns
	// out slow (under 200 MB/s over its first MiB and 20 ms, as on links that
	// cap each connection): the rest is then fetched in 8 MiB chunks, delivered and
	// verified in order. Zero means 8; 1 turns ranged fetches off. It is
	// also capped by MaxConnsPerHost. A registry that does not serve
	// bounded ranges gets one stream.
	RangeParallelism int

	// MaxPages and MaxListItems cap one listing (tags, catalog): a registry
	// whose pages never end fails with [oci.ErrTooLarge] instead of running
	// forever. Zero means 10,000 pages and 1,000,000 items.
	MaxPages, MaxListItems int

	// AllowCrossOriginLinks lets a listing follow a Link to another origin
	// (scheme, host or port) than the registry's. Without it such a Link
	// is an error wrapping [ErrProtocol]; an HTTPS registry's Link to plain
	// HTTP is refused either way.
	AllowCrossOriginLinks bool

	// Mirrors are other endpoints serving this registry's content, tried
	// in order before the registry itself (see [Endpoint]): manifests and
	// blobs by digest on every mirror with [CapabilityPull], tags only on
	// those with [CapabilityResolve]. A mirror's failure of any kind falls
	// through to the next endpoint at once (no retries against a
	// mirror, so a mirror that is down costs one connection attempt), the
	// registry last; the error of the last endpoint names the earlier
	// failures. A blob stream stays on the endpoint that opened it: a
	// mirror that breaks mid-stream is resumed there, and when it cannot
	// be (the mirror died), the rest of the blob comes from the next
	// endpoint, from the offset reached; one that serves wrong
	// bytes fails the read (every byte is verified; the bytes were
	// delivered) and is passed over for that blob from then on, so a
	// second read, as [oci.Layout.Write] makes, gets it elsewhere. Listings (tags,
	// catalog) and referrers go to the registry, or with MirrorsOnly to
	// the first mirror with CapabilityResolve.
	Mirrors []Endpoint

	// MirrorsOnly turns off the fallback to the registry: nothing is
	// requested from Host (air-gapped use). Mirrors must not be empty.
	MirrorsOnly bool

	// TLSConfig, when not nil, configures TLS to the registry (a private
	// CA, client certificates, InsecureSkipVerify for a lab registry) in
	// the client's own transport, which keeps its connection cap, timeouts
	// and HTTP/2. It may not be combined with Transport. Mirrors have
	// their own ([Endpoint.TLSConfig]). See [Registry.LoadHostsDir] for
	// Docker's and containerd's certificate directories.
	TLSConfig *tls.Config

	// Header is added to every request to the registry's own origin
	// (scheme, host and port), token requests to a realm there included;
	// never to another origin (a realm elsewhere, a redirect target, a
	// mirror, which has its own [Endpoint.Header]). The client's own
	// headers (Accept, Range, User-Agent, Authorization when it
	// authenticates) win.
	Header http.Header

	// DialTimeout bounds each connection attempt of the client's own
	// transport to the registry. Zero means 30 s. It may not be combined
	// with Transport.
	DialTimeout time.Duration

	// Trace, when not nil, is told of every HTTP request the client
	// makes (to the registry, mirrors, token realms, redirect targets)
	// when its response body is closed, or when it failed without one:
	// the method, redacted URL, status, body bytes read and time taken.
	// It is for logging (as "ocipull --verbose" does) and must be safe
	// for concurrent use. Nil costs nothing.
	Trace func(RequestTrace)

	initOnce sync.Once
	invalid  error // what is wrong with the fields, found when built
	t        *transport
	mirrors  []*transport // one per Mirrors entry
	rate     rateState

	// httpFallback (set by [Reference.Client] for loopback hosts) lets a
	// client without a Scheme fall back from HTTPS to plain HTTP when the
	// registry answers a TLS handshake in plain HTTP.
	httpFallback bool
}

// init builds the client's transport from its fields, once.
func (r *Registry) init() *transport {
	r.initOnce.Do(r.build)
	return r.t
}

// build makes the client's transports: the registry's and one per mirror.
func (r *Registry) build() {
	r.invalid = r.validate()
	r.t = newTransport(r, nil)
	r.t.rate = &r.rate
	for i := range r.Mirrors {
		m := newTransport(r, &r.Mirrors[i])
		m.rate = &r.rate
		r.mirrors = append(r.mirrors, m)
	}
}

// CloseIdleConnections closes the idle keep-alive connections of the
// client's transport (see http.Client.CloseIdleConnections). Connections in
// use are not interrupted.
func (r *Registry) CloseIdleConnections() {
	r.init().hc.CloseIdleConnections()
	for _, m := range r.mirrors {
		m.hc.CloseIdleConnections()
	}
}

// start returns the registry's transport, or what is wrong with its
// fields. They are validated once, with the transport built from them:
// they are fixed from the first use on.
func (r *Registry) start() (*transport, error) {
	t := r.init()
	if r.invalid != nil {
		return nil, r.invalid
	}
	return t, nil
}

// validate checks the registry's fields.
func (r *Registry) validate() error {
	if s := r.Scheme; s != "" && s != "https" && s != "http" {
		return fmt.Errorf("%w: scheme %q: want https or http", ErrInvalidReference, printable(s, 20))
	}
	if err := validateHost(r.Host); err != nil {
		return err
	}
	return r.validateEndpoints()
}

// Client reads manifests and blobs from one repository of a [Registry],
// following the pull side of the OCI Distribution Specification v1.1. It
// is a light handle: the connections, tokens, endpoints and settings are
// the Registry's, shared by every Client of it, so making one per request
// costs nothing. Make one with [Registry.Repository] (or
// [Reference.Client]); its methods are safe for concurrent use. The
// guarantees are those listed on [Registry].
type Client struct {
	reg     *Registry
	name    string // the repository, as in "library/ubuntu"
	scope   string // its pull scope
	invalid error  // what is wrong with name, reported by every request
}

// Repository returns the handle for the repository name (as in
// "library/ubuntu") on this registry. The name is validated by the
// handle's first request, which reports an invalid one as an error
// wrapping [ErrInvalidReference].
func (r *Registry) Repository(name string) *Client {
	return &Client{reg: r, name: name, scope: wire.PullScope(name), invalid: validateRepository(name)}
}

// Registry returns the registry the client reads from.
func (c *Client) Registry() *Registry { return c.reg }

// Name returns the client's repository name.
func (c *Client) Name() string { return c.name }

// Source returns the repository as an [oci.RangeSource]: manifests and
// blobs by digest, through the registry's endpoints, with retries and
// resumes. Its streams are raw: wrap them in [oci.VerifyReader] (or use
// [Client.OpenBlob], or hand the source to [oci.Layout.WriteBlob], which
// verifies) — the source itself checks only manifests' digests.
func (c *Client) Source() oci.RangeSource { return clientSource{c} }

// start validates the client's fields and returns its transport.
func (c *Client) start() (*transport, error) {
	t, err := c.reg.start()
	if err != nil {
		return nil, err
	}
	if c.invalid != nil {
		return nil, c.invalid
	}
	return t, nil
}

// Read reads the manifest reference names and returns it as a lazy ref:
// the manifest is fetched and verified now; child manifests and blobs are
// fetched when asked for ([oci.Index.Child], [oci.Image.OpenBlob]), under
// the context of that call, and verified then. reference is:
//
//   - a tag: the registry is trusted for the tag, the digest is computed
//     from the bytes and checked against Docker-Content-Digest when sent;
//   - a digest: fetched by digest and verified;
//   - tag@digest: fetched by tag and verified against the digest, so the
//     ref is both tagged and pinned.
//
// Transient failures are retried (see [Client]).
func (c *Client) Read(ctx context.Context, reference string) (oci.Ref, error) {
	_, err := c.start()
	if err != nil {
		return nil, err
	}
	tag, dgst, err := splitReference(reference)
	if err != nil {
		return nil, err
	}
	fetchBy := dgst
	if tag != "" {
		fetchBy = tag
	}
	var ref oci.Ref
	err = c.reg.onEndpoints(ctx, capabilityFor(fetchBy), func(t *transport) error {
		raw, mediaType, err := c.fetchManifest(ctx, t, fetchBy)
		if err != nil {
			return err
		}
		ref, err = oci.NewRef(c.Source(), raw, mediaType, digest.Digest(dgst))
		if err != nil {
			return fmt.Errorf("%s: %w", c.describe(tag, dgst), err)
		}
		return nil
	})
	return ref, err
}

// splitReference reads a tag, a digest or tag@digest, validating each.
func splitReference(reference string) (tag, dgst string, err error) {
	tag, dgst, _ = strings.Cut(reference, "@")
	if dgst == "" && strings.Contains(tag, ":") {
		tag, dgst = "", tag
	}
	if tag == "" && dgst == "" {
		return "", "", fmt.Errorf("%w: empty reference: want a tag, a digest or tag@digest", ErrInvalidReference)
	}
	if tag != "" {
		if err := validateTag(tag); err != nil {
			return "", "", err
		}
	}
	if dgst != "" {
		if err := validateDigest(dgst); err != nil {
			return "", "", err
		}
	}
	return tag, dgst, nil
}

// describeRef names a tag or digest reference in errors.
func (c *Client) describeRef(reference string) string {
	if strings.Contains(reference, ":") {
		return c.describe("", reference)
	}
	return c.describe(reference, "")
}

// describe names what was asked for in errors: host/repository:tag@digest.
func (c *Client) describe(tag, dgst string) string {
	s := c.reg.Host + "/" + c.name
	if tag != "" {
		s += ":" + tag
	}
	if dgst != "" {
		s += "@" + dgst
	}
	return s
}

// OpenBlob opens the blob desc names in the client's repository as a
// verified stream ([oci.VerifyReader]): it yields at most desc.Size bytes
// and ends with an error instead of io.EOF if they do not match desc's
// digest. Broken or stalled connections are resumed with Range requests;
// embedded data is served without a request. ctx governs the whole stream.
// The contract is that of [oci.Image.OpenBlob] and [oci.OpenBlob].
func (c *Client) OpenBlob(ctx context.Context, desc v1.Descriptor) (*oci.VerifyReader, error) {
	if _, err := c.start(); err != nil {
		return nil, err
	}
	return oci.OpenBlob(ctx, c.Source(), desc)
}

var (
	manifestMediaTypes = oci.ManifestMediaTypes()
	manifestAccept     = strings.Join(manifestMediaTypes, ", ")
)

// fetchManifest GETs a manifest (with retries), capped at
// oci.MaxManifestSize, and checks it against Docker-Content-Digest when
// present. It returns the bytes and the Content-Type; the caller parses
// them with oci.NewRef or oci.LoadRef, which verify the digest asked for
// and the size.
func (c *Client) fetchManifest(ctx context.Context, t *transport, reference string) ([]byte, string, error) {
	req := &request{method: http.MethodGet, url: t.registryURL(wire.Path(c.name, wire.Manifests, reference), ""),
		accept: manifestAccept, scope: c.scope}
	what := "manifest " + c.describeRef(reference)
	body, header, err := t.get(ctx, req, oci.MaxManifestSize, what)
	if err != nil {
		return nil, "", err
	}
	if h := header.Get("Docker-Content-Digest"); h != "" {
		hd := digest.Digest(strings.TrimSpace(h))
		if oci.ValidateDigest(hd) == nil {
			if got := hd.Algorithm().FromBytes(body); got != hd {
				return nil, "", fmt.Errorf("%s: %w: Docker-Content-Digest says %s, content hashes to %s", what, oci.ErrDigestMismatch, printable(string(hd), 140), got)
			}
		}
	}
	return body, header.Get("Content-Type"), nil
}
