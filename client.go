package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// Client reads manifests and blobs from one repository of one registry,
// following the pull side of the OCI Distribution Specification v1.1. Its
// zero value is not useful until Host and Repository are set; every other
// field's zero value works. Set the fields before first use and do not
// change or copy a Client after that; its methods are safe for concurrent use.
//
// What the client guarantees:
//   - Every byte is verified: manifests against the digest asked for (or,
//     by tag, against Docker-Content-Digest when the registry sends it),
//     blobs while they stream ([oci.VerifyReader]).
//   - Transient failures (network errors, 408, 429, 5xx but 501 and 505, a
//     stalled connection) are retried with the policy from GetBackOff,
//     honouring Retry-After; nothing is retried past the context's deadline.
//   - Broken blob downloads resume with Range requests.
//   - Requests go only to Scheme://Host/v2/ paths built from validated
//     names, and to the redirects and token realms those answer with; the
//     Authorization header is sent only to the host and port it is for.
type Client struct {
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

	// Repository is the repository name, as in "library/ubuntu".
	Repository string

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

	// AllowBasicOverHTTP permits sending Basic credentials over plain HTTP.
	// Loopback hosts are always permitted; other hosts only with this set.
	AllowBasicOverHTTP bool

	initOnce sync.Once
	hc       *http.Client
	auth     *authState

	// httpFallback (set by [Reference.Client] for loopback hosts) lets a
	// client without a Scheme fall back from HTTPS to plain HTTP when the
	// registry answers a TLS handshake in plain HTTP; fellBack records that
	// it did, for the client's lifetime.
	httpFallback bool
	fellBack     atomic.Bool
}

const (
	defaultUserAgent     = "ocipull-registry"
	defaultStallTimeout  = 30 * time.Second
	defaultMaxRetryAfter = 2 * time.Minute
	maxRedirects         = 10
)

func (c *Client) init() {
	c.initOnce.Do(func() {
		t := c.Transport
		if t == nil {
			var dt *http.Transport
			if def, ok := http.DefaultTransport.(*http.Transport); ok {
				dt = def.Clone()
			} else {
				// Someone replaced http.DefaultTransport: start from the
				// standard library's documented defaults instead.
				dt = &http.Transport{
					Proxy:                 http.ProxyFromEnvironment,
					DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
					ForceAttemptHTTP2:     true,
					MaxIdleConns:          100,
					IdleConnTimeout:       90 * time.Second,
					TLSHandshakeTimeout:   10 * time.Second,
					ExpectContinueTimeout: time.Second,
				}
			}
			dt.MaxIdleConnsPerHost = 64
			// Registry response headers are a few hundred bytes; 1 MiB
			// bounds what a hostile one can make the client hold (the
			// transport's own default is 10 MiB).
			dt.MaxResponseHeaderBytes = 1 << 20
			dt.MaxConnsPerHost = c.MaxConnsPerHost
			dt.DisableCompression = true
			t = dt
		}
		c.hc = &http.Client{
			Transport: t,
			// Redirects are followed by attempt, which decides per hop
			// whether Authorization may go along.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		c.auth = newAuthState()
	})
}

// CloseIdleConnections closes the idle keep-alive connections of the
// client's transport (see http.Client.CloseIdleConnections). Connections in
// use are not interrupted.
func (c *Client) CloseIdleConnections() {
	c.init()
	c.hc.CloseIdleConnections()
}

func (c *Client) scheme() string {
	switch {
	case c.Scheme != "":
		return c.Scheme
	case c.httpFallback && c.fellBack.Load():
		return "http"
	}
	return "https"
}

func (c *Client) userAgent() string {
	if c.UserAgent == "" {
		return defaultUserAgent
	}
	return c.UserAgent
}

func (c *Client) stallTimeout() time.Duration {
	if c.StallTimeout == 0 {
		return defaultStallTimeout
	}
	return c.StallTimeout
}

// validate checks the client's fields before any request.
func (c *Client) validate() error {
	if s := c.scheme(); s != "https" && s != "http" {
		return fmt.Errorf("%w: scheme %q: want https or http", ErrInvalidReference, printable(s, 20))
	}
	if err := validateHost(c.Host); err != nil {
		return err
	}
	return validateRepository(c.Repository)
}

func validateRepository(repo string) error {
	if len(repo) > MaxRepositoryLength || !RepositoryRegexp.MatchString(repo) {
		return fmt.Errorf("%w: repository %q: must match %s and be at most %d characters",
			ErrInvalidReference, printable(repo, 80), "[a-z0-9]+((.|_|__|-+)[a-z0-9]+)*(/...)*", MaxRepositoryLength)
	}
	return nil
}

func validateTag(tag string) error {
	if !TagRegexp.MatchString(tag) {
		return fmt.Errorf("%w: tag %q: must match %s", ErrInvalidReference, printable(tag, 80), TagRegexp)
	}
	return nil
}

func validateDigest(d string) error {
	if !DigestRegexp.MatchString(d) {
		return fmt.Errorf("%w: digest %q: not algorithm:encoded", ErrInvalidReference, printable(d, 80))
	}
	if err := oci.ValidateDigest(digest.Digest(d)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidReference, err)
	}
	return nil
}

// validateHost accepts host[:port] where host is a DNS name, an IPv4
// address or a bracketed IPv6 address, and port is 1-65535.
func validateHost(h string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: host %q: %s", ErrInvalidReference, printable(h, 80), why)
	}
	if h == "" {
		return bad("empty")
	}
	if len(h) > 255 {
		return bad("too long")
	}
	name, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return bad("unclosed [")
		}
		name, port = h[1:end], h[end+1:]
		if ip := net.ParseIP(name); ip == nil || !strings.Contains(name, ":") {
			return bad("not an IPv6 address in brackets")
		}
		if port != "" {
			if port[0] != ':' {
				return bad("junk after ]")
			}
			port = port[1:]
			if port == "" {
				return bad("empty port")
			}
		}
	} else {
		if i := strings.LastIndexByte(h, ':'); i >= 0 {
			name, port = h[:i], h[i+1:]
			if port == "" {
				return bad("empty port")
			}
		}
		if name == "" {
			return bad("empty host name")
		}
		for _, label := range strings.Split(name, ".") {
			if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
				return bad("invalid host name")
			}
			for _, r := range label {
				if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
					return bad("invalid host name")
				}
			}
		}
	}
	if port != "" {
		n, err := parseUint(port)
		if err != nil || n < 1 || n > 65535 {
			return bad("invalid port")
		}
	}
	return nil
}

// Read reads the manifest that tag and/or dgst name and returns it as a
// lazy ref: the manifest is fetched and verified now, child manifests and
// blobs only when asked for, each verified then.
//
//   - tag only: the registry is trusted for the tag, the digest is computed
//     from the bytes and checked against Docker-Content-Digest when sent;
//   - dgst only: fetched by digest and verified;
//   - both: fetched by tag and verified against dgst, so the ref is both
//     tagged and pinned (a pull-through cache can show the tag).
//
// ctx governs this request and every later one made through the returned
// ref and its children; cancel it only when done with them.
func (c *Client) Read(ctx context.Context, tag, dgst string) (oci.Ref, error) {
	c.init()
	if err := c.validate(); err != nil {
		return nil, err
	}
	if tag == "" && dgst == "" {
		return nil, fmt.Errorf("%w: neither a tag nor a digest", ErrInvalidReference)
	}
	reference := dgst
	if tag != "" {
		if err := validateTag(tag); err != nil {
			return nil, err
		}
		reference = tag
	}
	if dgst != "" {
		if err := validateDigest(dgst); err != nil {
			return nil, err
		}
	}
	raw, mediaType, err := c.fetchManifest(ctx, reference)
	if err != nil {
		return nil, err
	}
	ref, err := oci.NewRef(ctx, c.source(), raw, mediaType, digest.Digest(dgst))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.describe(tag, dgst), err)
	}
	return ref, nil
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
	s := c.Host + "/" + c.Repository
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
func (c *Client) OpenBlob(ctx context.Context, desc v1.Descriptor) (*oci.VerifyReader, error) {
	c.init()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return oci.OpenBlob(ctx, c.source(), desc)
}

func (c *Client) url(kind, reference string) string {
	return c.scheme() + "://" + c.Host + "/v2/" + c.Repository + "/" + kind + "/" + reference
}

func (c *Client) pullScope() string { return "repository:" + c.Repository + ":pull" }

var manifestAccept = strings.Join(oci.ManifestMediaTypes(), ", ")

// fetchManifest GETs a manifest (with retries), capped at
// oci.MaxManifestSize, and checks it against Docker-Content-Digest when
// present. It returns the bytes and the Content-Type; the caller parses
// them with oci.NewRef or oci.LoadRef, which verify the digest asked for
// (once, outside the retry loop: a mismatch is not retried) and the size.
func (c *Client) fetchManifest(ctx context.Context, reference string) ([]byte, string, error) {
	var raw []byte
	var contentType string
	u := c.url("manifests", reference)
	err := c.retry(ctx, func() error {
		body, header, err := c.getCapped(ctx, &request{method: http.MethodGet, url: u, accept: manifestAccept, scope: c.pullScope()},
			oci.MaxManifestSize, "manifest "+c.describeRef(reference))
		if err != nil {
			return err
		}
		if h := header.Get("Docker-Content-Digest"); h != "" {
			hd := digest.Digest(strings.TrimSpace(h))
			if oci.ValidateDigest(hd) == nil {
				if got := hd.Algorithm().FromBytes(body); got != hd {
					return backoff.Permanent(fmt.Errorf("manifest %s: %w: Docker-Content-Digest says %s, content hashes to %s",
						c.describeRef(reference), ErrDigestMismatch, hd, got))
				}
			}
		}
		raw, contentType = body, header.Get("Content-Type")
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return raw, contentType, nil
}

// getCapped performs req once and reads its body, refusing more than limit
// bytes — by Content-Length or by what arrives — with a permanent
// ErrTooLarge naming what. Other failures are left to the retry loop.
func (c *Client) getCapped(ctx context.Context, req *request, limit int64, what string) ([]byte, http.Header, error) {
	resp, err := c.attempt(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > limit {
		return nil, nil, backoff.Permanent(fmt.Errorf("%s: %w: Content-Length %d exceeds the limit of %d bytes", what, ErrTooLarge, resp.ContentLength, limit))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: reading the body: %w", what, err)
	}
	if int64(len(b)) > limit {
		return nil, nil, backoff.Permanent(fmt.Errorf("%s: %w: more than %d bytes", what, ErrTooLarge, limit))
	}
	return b, resp.Header, nil
}

// request is one logical HTTP request of the pull protocol.
type request struct {
	method string
	url    string
	accept string
	rng    string // Range header value, or empty
	scope  string // token scope the request needs
}

// attempt performs req once: it authorizes it, answers one auth challenge,
// follows redirects (Authorization only to the same scheme, host and
// port) and returns a 2xx response whose body is watched for stalls. Any
// other status becomes a *ClientError.
func (c *Client) attempt(ctx context.Context, req *request) (*http.Response, error) {
	u, err := url.Parse(req.url)
	if err != nil {
		return nil, backoff.Permanent(fmt.Errorf("%w: %v", ErrInvalidReference, err))
	}
	// Authorization goes only to the registry itself: same scheme, host
	// and port as Scheme://Host, whatever URL a Link or redirect names.
	origin := &url.URL{Scheme: c.scheme(), Host: c.Host}
	method := req.method
	challenged := false
	for hops := 0; ; {
		hreq, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
		if err != nil {
			return nil, backoff.Permanent(err)
		}
		hreq.Header.Set("User-Agent", c.userAgent())
		hreq.Header.Set("Accept-Encoding", "identity")
		if req.accept != "" {
			hreq.Header.Set("Accept", req.accept)
		}
		if req.rng != "" {
			hreq.Header.Set("Range", req.rng)
		}
		sameOrigin := sameHostPort(u, origin)
		if sameOrigin {
			if err := c.authorize(ctx, hreq, req.scope); err != nil {
				return nil, err
			}
		}
		resp, err := c.send(ctx, hreq)
		if err != nil {
			if c.Scheme == "" && c.httpFallback && sameOrigin && u.Scheme == "https" && errors.Is(err, http.ErrSchemeMismatch) {
				// A loopback registry that speaks plain HTTP: use it
				// from now on, as Docker and containerd do for localhost.
				c.fellBack.Store(true)
				u.Scheme, origin.Scheme = "http", "http"
				continue
			}
			return nil, err
		}
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return resp, nil
		case isRedirect(resp.StatusCode):
			loc := resp.Header.Get("Location")
			drain(resp)
			hops++
			if hops > maxRedirects {
				return nil, backoff.Permanent(fmt.Errorf("%s %s: %w: more than %d redirects", req.method, redactURL(u), ErrProtocol, maxRedirects))
			}
			next, err := u.Parse(loc)
			if err != nil || loc == "" || (next.Scheme != "https" && next.Scheme != "http") {
				return nil, backoff.Permanent(fmt.Errorf("%s %s: %w: bad redirect Location", req.method, redactURL(u), ErrProtocol))
			}
			if u.Scheme == "https" && next.Scheme == "http" {
				return nil, backoff.Permanent(fmt.Errorf("%s %s: %w: refusing redirect from https to http %s", req.method, redactURL(u), ErrProtocol, redactURL(next)))
			}
			if resp.StatusCode == http.StatusSeeOther {
				method = http.MethodGet
			}
			u = next
		case (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) && sameOrigin && !challenged:
			ce := newClientError(resp)
			retry, err := c.challenge(ctx, resp, req.scope, ce)
			if err != nil {
				return nil, err
			}
			if !retry {
				return nil, backoff.Permanent(ce)
			}
			challenged = true
		default:
			ce := newClientError(resp)
			if ce.Temporary() {
				return nil, ce
			}
			if ce.StatusCode == http.StatusUnauthorized || ce.StatusCode == http.StatusForbidden {
				if _, credErr := c.credential(ctx); credErr != nil {
					return nil, backoff.Permanent(fmt.Errorf("%w (and looking up credentials failed: %v)", ce, credErr))
				}
			}
			return nil, backoff.Permanent(ce)
		}
	}
}

// send does one round trip with a stall watchdog: if no response headers
// arrive within StallTimeout, or later less than stallMinBytes of body, the
// request is cancelled and its error wraps ErrStalled. The returned body stops the
// watchdog when closed.
func (c *Client) send(ctx context.Context, req *http.Request) (*http.Response, error) {
	d := c.stallTimeout()
	if d < 0 {
		resp, err := c.hc.Do(req)
		if err != nil {
			return nil, c.networkError(ctx, req, err)
		}
		return resp, nil
	}
	actx, cancel := context.WithCancel(ctx)
	wd := &watchdog{d: d, cancel: cancel}
	wd.timer = time.AfterFunc(d, wd.fire)
	resp, err := c.hc.Do(req.WithContext(actx))
	if err != nil {
		wd.stop()
		cancel()
		if wd.fired() {
			err = fmt.Errorf("no response headers for %s: %w", d, ErrStalled)
		}
		return nil, c.networkError(ctx, req, err)
	}
	wd.kick()
	resp.Body = &watchedBody{rc: resp.Body, wd: wd}
	return resp, nil
}

// networkError wraps a transport failure: permanent for the caller's own
// cancellation, TLS verification failures and names that do not exist,
// retryable otherwise.
func (c *Client) networkError(ctx context.Context, req *http.Request, err error) error {
	werr := fmt.Errorf("%s %s: %w", req.Method, redactURL(req.URL), stripURLError(err))
	if ctx.Err() != nil {
		return backoff.Permanent(werr)
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) {
		return backoff.Permanent(werr)
	}
	// A plain-HTTP server will not learn TLS on a retry.
	if errors.Is(err, http.ErrSchemeMismatch) {
		return backoff.Permanent(werr)
	}
	// A name that does not exist will not exist a second later either.
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return backoff.Permanent(werr)
	}
	return werr
}

// stripURLError drops *url.Error's own unredacted URL.
func stripURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// sameHostPort compares scheme, host and port, with default ports filled
// in: Go's http.Client keeps Authorization on a redirect to another port of
// the same host name, which would leak it to another service.
func sameHostPort(a, b *url.URL) bool {
	return a.Scheme == b.Scheme && strings.EqualFold(hostPort(a), hostPort(b))
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		if u.Scheme == "https" {
			port = "443"
		} else {
			port = "80"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// drain reads a little of a body we do not need, so the connection can be
// reused, and closes it.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
}

// readCapped reads up to max bytes of r.
func readCapped(r io.Reader, max int64) []byte {
	var buf bytes.Buffer
	io.Copy(&buf, io.LimitReader(r, max))
	return buf.Bytes()
}
