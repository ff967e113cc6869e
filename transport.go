package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/ocipull/registry/oci"
	"github.com/opencontainers/go-digest"
)

// transport is the one HTTP layer under a Client: the http.Client, the
// scheme of the registry's origin (with the loopback fallback), the auth
// state and token cache, the single retry loop, the stall watchdog,
// redirects and the Authorization rule, capped reads and error
// classification. The Client keeps the protocol; everything that talks
// HTTP goes through here. It holds no context: every call takes one.
type transport struct {
	hc            *http.Client
	host          string // the registry's host[:port]
	userAgent     string
	stall         time.Duration // <0: off
	stalls        stallWatch    // of the requests in flight (see stallwatch.go)
	maxRetryAfter time.Duration
	getBackOff    func() backoff.BackOff
	notify        backoff.Notify
	creds         CredentialSource
	basicOverHTTP bool
	limits        listLimits
	internal      bool // the registry is on an internal host (see isInternalHost)
	ranged        rangedConfig
	chunks        chunkBudget // ranged fetches' buffers, RangeParallelism of them

	// scheme is the Client's Scheme ("" means https, or https with the
	// loopback fallback when fallback is set). fellBack records, for the
	// transport's lifetime, that the registry answered TLS in plain HTTP:
	// from then on every URL naming the registry's host and port uses
	// http, however and whenever it was built.
	scheme   string
	fallback bool
	fellBack atomic.Bool

	auth authState

	// root is the API root replacing "/v2" in paths ("" for "/v2"); ns,
	// when not empty, is the ns parameter added to every request to this
	// origin; mirror marks a mirror's transport, whose first failure of an
	// operation falls through to the next endpoint instead of retrying.
	root   string
	ns     string
	mirror bool
	// rate is the Client's last seen rate limit, shared by its transports.
	rate *rateState
	// trace is the Client's Trace.
	trace func(RequestTrace)
	// header is added to every request to the origin (Registry.Header or
	// Endpoint.Header); the client's own fields are set after it.
	header http.Header
	// badBlobs are the digests whose bytes from this mirror did not
	// verify: later opens of them skip it.
	badBlobs sync.Map // digest.Digest → struct{}
}

// servedBad records that this mirror served bytes for d that did not
// verify (the registry itself is never passed over).
func (t *transport) servedBad(d digest.Digest) {
	if t.mirror {
		t.badBlobs.Store(d, struct{}{})
	}
}

// wasBad reports whether this mirror served bad bytes for d before.
func (t *transport) wasBad(d digest.Digest) bool {
	_, bad := t.badBlobs.Load(d)
	return bad
}

const (
	defaultUserAgent     = "ocipull-registry"
	defaultStallTimeout  = 30 * time.Second
	defaultMaxRetryAfter = 2 * time.Minute
	maxRedirects         = 10
)

// newTransport builds the layer from a Client's fields, for the registry
// or (ep not nil) for one of its mirrors.
func newTransport(c *Registry, ep *Endpoint) *transport {
	t := &transport{
		host:          c.Host,
		userAgent:     c.UserAgent,
		stall:         c.StallTimeout,
		maxRetryAfter: c.MaxRetryAfter,
		getBackOff:    c.GetBackOff,
		notify:        c.RetryNotify,
		creds:         c.Credentials,
		basicOverHTTP: c.AllowBasicOverHTTP,
		scheme:        c.Scheme,
		fallback:      c.httpFallback,
		limits:        newListLimits(c.MaxPages, c.MaxListItems),
		internal:      isInternalHost(hostOnly(c.Host)),
		ranged:        defaultRanged,
		trace:         c.Trace,
	}
	if t.userAgent == "" {
		t.userAgent = defaultUserAgent
	}
	if t.stall == 0 {
		t.stall = defaultStallTimeout
	}
	t.stalls.d = t.stall
	if t.maxRetryAfter == 0 {
		t.maxRetryAfter = defaultMaxRetryAfter
	}
	tlsConfig, dialTimeout := c.TLSConfig, c.DialTimeout
	t.header = c.Header
	if ep != nil {
		t.host, t.scheme, t.fallback = ep.Host, ep.Scheme, false
		t.basicOverHTTP = false
		t.internal = isInternalHost(hostOnly(ep.Host))
		t.mirror, t.ns, tlsConfig = true, RegistryName(c.Host), ep.TLSConfig
		t.header, dialTimeout = ep.Header, ep.DialTimeout
		if _, forRegistry := c.Credentials.(registryCredentials); forRegistry {
			t.creds = nil // StaticCredentials and IdentityToken are the registry's
		}
		if ep.Path != "" && ep.Path != "/v2" {
			t.root = strings.TrimSuffix(ep.Path, "/")
			if t.root == "" {
				t.root = "/"
			}
		}
	}
	t.auth.tokens = map[tokenKey]*tokenEntry{}
	t.chunks.max = c.rangeLanes()
	rt := c.Transport
	if rt == nil {
		tt := tunedTransport(c.MaxConnsPerHost, dialTimeout, t.dialControl)
		if tlsConfig != nil {
			tt.TLSClientConfig = tlsConfig.Clone()
		}
		rt = tt
	}
	t.hc = &http.Client{
		Transport: rt,
		// Redirects are followed by attempt, which decides per hop
		// whether Authorization may go along.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return t
}

// tunedTransport is the client's own http.Transport: a clone of
// http.DefaultTransport keeping 64 idle connections per host, with capped
// response headers, no transparent decompression (bytes are hashed as
// served), dialTimeout (zero: 30 s) on each connection attempt and
// control, when not nil, run on every dialled address.
func tunedTransport(maxConnsPerHost int, dialTimeout time.Duration, control func(network, address string) error) *http.Transport {
	var dt *http.Transport
	if def, ok := http.DefaultTransport.(*http.Transport); ok {
		dt = def.Clone()
	} else {
		// Someone replaced http.DefaultTransport: start from the standard
		// library's documented defaults instead.
		dt = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	if dialTimeout <= 0 {
		dialTimeout = 30 * time.Second
	}
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	if control != nil {
		dialer.ControlContext = func(ctx context.Context, network, address string, _ syscall.RawConn) error {
			if !dialChecked(ctx) {
				return nil
			}
			return control(network, address)
		}
	}
	dt.DialContext = dialer.DialContext
	dt.MaxIdleConnsPerHost = 64
	// Registry response headers are a few hundred bytes; 1 MiB bounds what
	// a hostile one can make the client hold (the default is 10 MiB).
	dt.MaxResponseHeaderBytes = 1 << 20
	dt.MaxConnsPerHost = maxConnsPerHost
	dt.DisableCompression = true
	return dt
}

// currentScheme is the scheme of the registry's origin now.
func (t *transport) currentScheme() string {
	switch {
	case t.scheme != "":
		return t.scheme
	case t.fallback && t.fellBack.Load():
		return "http"
	}
	return "https"
}

// origin is scheme://host of the registry as the transport reaches it now.
func (t *transport) origin() *url.URL {
	return &url.URL{Scheme: t.currentScheme(), Host: t.host}
}

// registryURL is an absolute URL on the registry's origin; path is an API
// path ("/v2/..."), moved under the endpoint's API root when it has one.
func (t *transport) registryURL(path, rawQuery string) *url.URL {
	u := t.origin()
	if t.root != "" {
		rest := strings.TrimPrefix(path, "/v2")
		if t.root == "/" {
			path = rest
			if path == "" {
				path = "/"
			}
		} else {
			path = t.root + rest
		}
	}
	u.Path, u.RawQuery = path, rawQuery
	return u
}

// withNS adds the ns parameter to a URL on a mirror's origin.
func (t *transport) withNS(u *url.URL) *url.URL {
	if t.ns == "" || u.Query().Has("ns") {
		return u
	}
	c := *u
	if c.RawQuery != "" {
		c.RawQuery += "&"
	}
	c.RawQuery += "ns=" + url.QueryEscape(t.ns)
	return &c
}

// applyOrigin gives u the origin's current scheme when u names the
// registry's own host and port and the registry was found to speak plain
// HTTP: a URL built before the fallback (a retry, a Link page, a resumed
// range) follows it.
func (t *transport) applyOrigin(u *url.URL) *url.URL {
	if t.scheme == "" && t.fallback && t.fellBack.Load() && u.Scheme == "https" && strings.EqualFold(u.Host, t.host) {
		c := *u
		c.Scheme = "http"
		return &c
	}
	return u
}

// newBackOff is a fresh policy for one operation.
func (t *transport) newBackOff() backoff.BackOff {
	if t.getBackOff != nil {
		if b := t.getBackOff(); b != nil {
			b.Reset()
			return b
		}
	}
	return defaultBackOff()
}

// request is one logical HTTP request of the pull protocol.
type request struct {
	method string
	url    *url.URL
	accept string
	rng    string // Range header value, or empty
	scope  string // token scope the request needs
}

// get performs req under the retry loop and reads its body, refusing more
// than limit bytes (permanently, with oci.ErrTooLarge naming what). A body that
// breaks while read is retried like any transient failure.
func (t *transport) get(ctx context.Context, req *request, limit int64, what string) ([]byte, http.Header, error) {
	var body []byte
	var header http.Header
	var bo backoff.BackOff
	err := t.retry(ctx, &bo, func() error {
		resp, err := t.attempt(ctx, req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := readAllCapped(resp.Body, resp.ContentLength, limit)
		if errors.Is(err, oci.ErrTooLarge) {
			return backoff.Permanent(fmt.Errorf("%s: %w", what, err))
		}
		if err != nil {
			return fmt.Errorf("%s: reading the body: %w", what, err)
		}
		body, header = b, resp.Header
		return nil
	})
	return body, header, err
}

// attempt performs req once: it authorizes it (fetching a token if one is
// needed, once: the token fetch is part of the attempt and is retried
// with it), answers one auth challenge, follows redirects (Authorization
// only to the registry's own scheme, host and port) and returns a 2xx
// response whose body is watched for stalls. Any other status becomes a
// *ClientError, permanent unless Temporary.
func (t *transport) attempt(ctx context.Context, req *request) (*http.Response, error) {
	u := t.applyOrigin(req.url)
	method := req.method
	challenged := false
	for hops := 0; ; {
		resp, sameOrigin, err := t.sendOnce(ctx, req, method, u)
		if err != nil {
			if t.fallBack(u, sameOrigin, err) {
				u = t.applyOrigin(u)
				continue
			}
			return nil, err
		}
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return resp, nil
		case isRedirect(resp.StatusCode):
			if hops++; hops > maxRedirects {
				drain(resp)
				return nil, backoff.Permanent(fmt.Errorf("%s %s: %w: more than %d redirects", req.method, redactURL(u), ErrProtocol, maxRedirects))
			}
			next, err := redirectTarget(resp, u, req.method)
			if err != nil {
				return nil, err
			}
			if resp.StatusCode == http.StatusSeeOther {
				method = http.MethodGet
			}
			if !t.internal && !t.isOrigin(next) && isInternalHost(next.Hostname()) {
				return nil, backoff.Permanent(fmt.Errorf("%s %s: %w: refusing redirect to internal address %s", req.method, redactURL(u), ErrProtocol, redactURL(next)))
			}
			u = t.applyOrigin(next)
		case isAuthRefusal(resp.StatusCode) && sameOrigin && !challenged:
			ce := newClientError(resp)
			retry, err := t.challenge(ctx, resp, req.scope, ce)
			if err != nil {
				return nil, err
			}
			if !retry {
				return nil, backoff.Permanent(ce)
			}
			challenged = true
		default:
			return nil, t.refusal(ctx, resp)
		}
	}
}

// sendOnce sends one hop of req to u, with Authorization when u is the
// registry's own origin.
func (t *transport) sendOnce(ctx context.Context, req *request, method string, u *url.URL) (*http.Response, bool, error) {
	sameOrigin := t.isOrigin(u)
	if !sameOrigin && !t.internal {
		ctx = withDialCheck(ctx)
	}
	if sameOrigin {
		u = t.withNS(u)
	}
	wctx, wd := t.watch(ctx)
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		wd.release()
		return nil, false, backoff.Permanent(fmt.Errorf("%w: %q is not an http(s) URL", ErrInvalidReference, printable(u.Redacted(), 200)))
	}
	// The URL is already parsed: given as it is (a copy), not printed and
	// parsed again for every request.
	hreq, err := http.NewRequestWithContext(wctx, method, "", nil)
	if err != nil {
		wd.release()
		return nil, false, backoff.Permanent(fmt.Errorf("%w: %v", ErrInvalidReference, err))
	}
	uc := *u
	hreq.URL, hreq.Host = &uc, u.Host
	h := hreq.Header
	if sameOrigin {
		t.addHeader(h)
	}
	h["User-Agent"] = []string{t.userAgent}
	h["Accept-Encoding"] = []string{"identity"}
	if req.accept != "" {
		h["Accept"] = []string{req.accept}
	}
	if req.rng != "" {
		h["Range"] = []string{req.rng}
	}
	if sameOrigin {
		if err := t.authorize(ctx, hreq, req.scope); err != nil {
			wd.release()
			return nil, true, err
		}
	}
	resp, err := t.sendWatched(ctx, hreq, wd)
	return resp, sameOrigin, err
}

// addHeader copies the configured extra header fields (Registry.Header or
// Endpoint.Header) into h, before the client sets its own.
func (t *transport) addHeader(h http.Header) {
	for k, v := range t.header {
		h[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
	}
}

// isOrigin reports whether u is on the registry's origin as the transport
// reaches it now (scheme, host and port, default ports filled in).
func (t *transport) isOrigin(u *url.URL) bool {
	if u.Host == t.host && u.Scheme == t.currentScheme() {
		return true
	}
	return sameHostPort(u, t.origin())
}

// fallBack reports whether a failed hop to u is the loopback registry
// answering TLS in plain HTTP, and if so switches the origin to http for
// the transport's lifetime, as Docker and containerd do for localhost.
func (t *transport) fallBack(u *url.URL, sameOrigin bool, err error) bool {
	if t.scheme != "" || !t.fallback || !sameOrigin || u.Scheme != "https" || !errors.Is(err, http.ErrSchemeMismatch) {
		return false
	}
	t.fellBack.Store(true)
	return true
}

// refusal turns a final non-2xx answer into its error: temporary ones are
// left to the retry loop, the rest are permanent; an auth refusal names a
// failed credential lookup.
func (t *transport) refusal(ctx context.Context, resp *http.Response) error {
	ce := newClientError(resp)
	if ce.Temporary() {
		return ce
	}
	if isAuthRefusal(ce.StatusCode) {
		if _, credErr := t.credential(ctx); credErr != nil {
			return backoff.Permanent(fmt.Errorf("%w (and looking up credentials failed: %v)", ce, credErr))
		}
	}
	return backoff.Permanent(ce)
}

func isAuthRefusal(code int) bool {
	return code == http.StatusUnauthorized || code == http.StatusForbidden
}

// redirectTarget reads a redirect's Location (relative to u), refusing a
// missing or non-http(s) target and a downgrade from https to http.
func redirectTarget(resp *http.Response, u *url.URL, method string) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	drain(resp)
	next, err := u.Parse(loc)
	if err != nil || loc == "" || (next.Scheme != "https" && next.Scheme != "http") {
		return nil, backoff.Permanent(fmt.Errorf("%s %s: %w: bad redirect Location", method, redactURL(u), ErrProtocol))
	}
	if u.Scheme == "https" && next.Scheme == "http" {
		return nil, backoff.Permanent(fmt.Errorf("%s %s: %w: refusing redirect from https to http %s", method, redactURL(u), ErrProtocol, redactURL(next)))
	}
	return next, nil
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
