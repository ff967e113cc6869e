package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Credential is what a [CredentialSource] supplies for a registry host.
// The zero value means anonymous.
type Credential struct {
	// Username and Password are sent with HTTP Basic authentication: to the
	// registry when it asks for Basic, to the token realm when it asks for
	// Bearer.
	Username string
	Password string
	// IdentityToken is an OAuth2 refresh token (Docker's "identitytoken").
	// When set, tokens are requested with the OAuth2 form
	// grant_type=refresh_token (falling back to a GET when the realm
	// refuses POST).
	IdentityToken string
}

func (c Credential) anonymous() bool {
	return c.Username == "" && c.Password == "" && c.IdentityToken == ""
}

// CredentialSource supplies credentials for a registry host (host[:port],
// as in [Client.Host]). Returning the zero Credential and a nil error means
// anonymous. An error does not stop an anonymous pull: it is reported only
// if the registry then refuses the anonymous attempt.
type CredentialSource interface {
	Credential(ctx context.Context, host string) (Credential, error)
}

// CredentialFunc adapts a function to [CredentialSource].
type CredentialFunc func(ctx context.Context, host string) (Credential, error)

// Credential calls f.
func (f CredentialFunc) Credential(ctx context.Context, host string) (Credential, error) {
	return f(ctx, host)
}

// StaticCredentials is a [CredentialSource] that supplies the same username
// and password for every host.
func StaticCredentials(username, password string) CredentialSource {
	return CredentialFunc(func(context.Context, string) (Credential, error) {
		return Credential{Username: username, Password: password}, nil
	})
}

// IdentityToken is a [CredentialSource] that supplies an OAuth2 refresh
// token (as "docker login" stores it) for every host.
func IdentityToken(token string) CredentialSource {
	return CredentialFunc(func(context.Context, string) (Credential, error) {
		return Credential{IdentityToken: token}, nil
	})
}

// Limits and margins of the token exchange.
const (
	// maxTokenResponse caps a token response: tokens are at most a few KiB
	// (ECR's are the longest seen, about 2 KiB), 1 MiB is generous.
	maxTokenResponse = 1 << 20
	// maxTokenLength caps the token itself, which goes into every header.
	maxTokenLength = 64 << 10
	// defaultTokenLifetime applies when expires_in is absent, as the Docker
	// token specification says (60 seconds).
	defaultTokenLifetime = 60 * time.Second
	// maxTokenMargin is how long before expiry a cached token is renewed; for
	// short-lived tokens the margin is a quarter of the lifetime.
	maxTokenMargin = 30 * time.Second
	// oauthClientID names this client in OAuth2 token requests.
	oauthClientID = "ocipull-registry"
)

// authState is one client's authorization state: what the registry asked
// for, and the tokens it granted. Nothing here is shared between clients.
type authState struct {
	mu      sync.Mutex
	basic   bool       // the registry asked for Basic
	bearer  *challenge // the registry's last Bearer challenge
	tokens  map[tokenKey]*tokenEntry
	credMu  sync.Mutex
	credOK  bool
	cred    Credential
	credErr error
}

type tokenKey struct{ realm, service, scope string }

// tokenEntry is a token, or a fetch of one under way (done not yet closed).
type tokenEntry struct {
	done    chan struct{}
	token   string
	renewAt time.Time
	err     error
}

func newAuthState() *authState { return &authState{tokens: map[tokenKey]*tokenEntry{}} }

// credential looks up the client's credentials once and remembers the answer.
func (c *Client) credential(ctx context.Context) (Credential, error) {
	a := c.auth
	a.credMu.Lock()
	defer a.credMu.Unlock()
	if !a.credOK {
		if c.Credentials != nil {
			a.cred, a.credErr = c.Credentials.Credential(ctx, c.Host)
			if a.credErr != nil {
				a.cred = Credential{}
			}
		}
		a.credOK = true
	}
	return a.cred, a.credErr
}

// authorize adds the Authorization header the registry asked for earlier:
// a cached or freshly fetched token for scope, or Basic credentials.
// Before any challenge it adds nothing.
func (c *Client) authorize(ctx context.Context, req *http.Request, scope string) error {
	a := c.auth
	a.mu.Lock()
	bearer, basic := a.bearer, a.basic
	a.mu.Unlock()
	switch {
	case bearer != nil:
		tok, err := c.token(ctx, bearer, scope, scope, false)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	case basic:
		cred, _ := c.credential(ctx)
		if cred.Username != "" || cred.Password != "" {
			req.SetBasicAuth(cred.Username, cred.Password)
		}
	}
	return nil
}

// challenge answers a 401 (or a 403 asking for a wider scope): it records
// what the registry asked for and gets the authorization, reporting whether
// the request should be retried with it. ce is the refusal, returned when
// nothing can be done, with the credential lookup's error when that failed.
func (c *Client) challenge(ctx context.Context, resp *http.Response, scope string, ce *ClientError) (bool, error) {
	cs, perr := parseChallenges(resp.Header.Values("WWW-Authenticate"))
	var bearer, basic *challenge
	for i := range cs {
		switch cs[i].Scheme {
		case "bearer":
			if bearer == nil {
				bearer = &cs[i]
			}
		case "basic":
			if basic == nil {
				basic = &cs[i]
			}
		}
	}
	if resp.StatusCode == http.StatusForbidden && (bearer == nil || bearer.Params["error"] != "insufficient_scope") {
		return false, nil
	}
	switch {
	case bearer != nil:
		if err := c.checkRealm(bearer.Params["realm"]); err != nil {
			return false, backoff.Permanent(err)
		}
		c.auth.mu.Lock()
		c.auth.bearer = bearer
		c.auth.mu.Unlock()
		// The challenge's own scope is passed through unchanged (it may be
		// wider, as after insufficient_scope); without one, the request's.
		ask := scope
		if s := bearer.Params["scope"]; s != "" {
			ask = s
		}
		if _, err := c.token(ctx, bearer, scope, ask, true); err != nil {
			return false, err
		}
		return true, nil
	case basic != nil:
		cred, credErr := c.credential(ctx)
		if cred.Username == "" && cred.Password == "" {
			if credErr != nil {
				return false, backoff.Permanent(fmt.Errorf("%w (and looking up credentials failed: %v)", ce, credErr))
			}
			return false, nil
		}
		if err := c.checkBasicAllowed(c.scheme(), c.Host); err != nil {
			return false, backoff.Permanent(err)
		}
		c.auth.mu.Lock()
		c.auth.basic = true
		c.auth.mu.Unlock()
		return true, nil
	default:
		if perr != nil {
			return false, backoff.Permanent(fmt.Errorf("%w: %w: %v", ce, ErrProtocol, perr))
		}
		return false, nil
	}
}

// checkRealm refuses realms that are not absolute http(s) URLs, and plain
// HTTP realms for a registry reached over HTTPS (a downgrade that would
// expose credentials and tokens), unless the realm is on a loopback host.
func (c *Client) checkRealm(realm string) error {
	u, err := url.Parse(realm)
	if err != nil || realm == "" || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil {
		return fmt.Errorf("%w: bearer challenge realm %q is not an absolute http(s) URL", ErrProtocol, printable(realm, 120))
	}
	if u.Scheme == "http" && c.scheme() == "https" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%w: refusing plain-HTTP token realm %s for an HTTPS registry", ErrProtocol, redactURL(u))
	}
	// A registry on a public name must not point the client (and its
	// credentials) at loopback, private or link-local addresses such as the
	// cloud metadata service. Local setups (a registry that is itself on
	// such an address) may use them.
	if isInternalHost(u.Hostname()) && !sameHostPort(u, &url.URL{Scheme: u.Scheme, Host: c.Host}) && !isInternalHost(hostOnly(c.Host)) {
		return fmt.Errorf("%w: refusing token realm %s on an internal address for registry %s", ErrProtocol, redactURL(u), printable(c.Host, 80))
	}
	return nil
}

// hostOnly drops the port of host[:port] and the brackets of an IPv6 address.
func hostOnly(hostport string) string {
	h := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		h = hh
	}
	return strings.Trim(h, "[]")
}

// isInternalHost reports localhost names and loopback, private and
// link-local IP literals. Other names are not resolved.
func isInternalHost(host string) bool {
	if isLoopback(host) {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && isInternalIP(ip)
}

// isInternalIP reports loopback, private (RFC 1918, RFC 4193), link-local
// and unspecified addresses.
func isInternalIP(ip net.IP) bool {
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified()
}

// checkBasicAllowed refuses to send Basic credentials over plain HTTP to a
// host that is not loopback unless AllowBasicOverHTTP is set.
func (c *Client) checkBasicAllowed(scheme, host string) error {
	if scheme == "https" || c.AllowBasicOverHTTP {
		return nil
	}
	if isLoopback(hostOnly(host)) {
		return nil
	}
	return fmt.Errorf("%w: refusing to send credentials over plain HTTP to %s (set AllowBasicOverHTTP to permit it)", ErrUnauthorized, printable(host, 80))
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// token returns a token for scope (the scope a request needs, the cache
// key) from the realm and service of the bearer challenge ch: from the
// cache unless stale or refresh is set, else fetched — asking for ask, which
// is scope itself or, right after a challenge, the challenge's own scope —
// one fetch at a time per key, shared by every goroutine that waits for it.
func (c *Client) token(ctx context.Context, ch *challenge, scope, ask string, refresh bool) (string, error) {
	a := c.auth
	key := tokenKey{realm: ch.Params["realm"], service: ch.Params["service"], scope: scope}
	a.mu.Lock()
	if e := a.tokens[key]; e != nil {
		select {
		case <-e.done:
			if e.err == nil && !refresh && time.Now().Before(e.renewAt) {
				a.mu.Unlock()
				return e.token, nil
			}
			// Stale, failed or refused: fetch anew below.
		default:
			// A fetch is under way: wait for it, whatever refresh says, so
			// that concurrent refusals cause one fetch.
			a.mu.Unlock()
			select {
			case <-e.done:
			case <-ctx.Done():
				return "", ctx.Err()
			}
			return e.token, e.err
		}
	}
	e := &tokenEntry{done: make(chan struct{})}
	a.tokens[key] = e
	a.mu.Unlock()

	e.token, e.renewAt, e.err = c.fetchToken(ctx, ch.Params["realm"], ch.Params["service"], ask)
	close(e.done)
	if e.err != nil {
		a.mu.Lock()
		if a.tokens[key] == e {
			delete(a.tokens, key)
		}
		a.mu.Unlock()
	}
	return e.token, e.err
}

// tokenResponse is the token endpoint's answer (Docker registry token
// authentication; OAuth2 for the POST form).
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// fetchToken asks the realm for a token (with retries), returning it and
// when to renew it.
func (c *Client) fetchToken(ctx context.Context, realm, service, scope string) (string, time.Time, error) {
	cred, credErr := c.credential(ctx)
	var tr tokenResponse
	err := c.retry(ctx, func() error {
		var err error
		if cred.IdentityToken != "" {
			tr, err = c.tokenRequest(ctx, http.MethodPost, realm, service, scope, cred)
			var ce *ClientError
			if errors.As(err, &ce) && (ce.StatusCode == http.StatusNotFound || ce.StatusCode == http.StatusMethodNotAllowed || ce.StatusCode == http.StatusBadRequest) {
				tr, err = c.tokenRequest(ctx, http.MethodGet, realm, service, scope, cred)
			}
			return err
		}
		tr, err = c.tokenRequest(ctx, http.MethodGet, realm, service, scope, cred)
		return err
	})
	if err != nil {
		err = fmt.Errorf("fetching token for %s from %s: %w", scope, redactURL(mustParse(realm)), err)
		if credErr != nil {
			err = fmt.Errorf("%w (and looking up credentials failed: %v)", err, credErr)
		}
		return "", time.Time{}, err
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	lifetime := defaultTokenLifetime
	if tr.ExpiresIn > 0 && tr.ExpiresIn < 1<<31 {
		lifetime = time.Duration(tr.ExpiresIn) * time.Second
	}
	margin := lifetime / 4
	if margin > maxTokenMargin {
		margin = maxTokenMargin
	}
	return tok, time.Now().Add(lifetime - margin), nil
}

func mustParse(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		return &url.URL{}
	}
	return u
}

// tokenRequest makes one token request. GET sends service and scope in the
// query with Basic credentials when there are any; POST sends the OAuth2
// refresh-token form. Redirects are not followed.
func (c *Client) tokenRequest(ctx context.Context, method, realm, service, scope string, cred Credential) (tokenResponse, error) {
	var tr tokenResponse
	u, err := url.Parse(realm)
	if err != nil {
		return tr, backoff.Permanent(err)
	}
	var body io.Reader
	var form url.Values
	if method == http.MethodPost {
		form = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cred.IdentityToken}, "client_id": {oauthClientID}}
		if service != "" {
			form.Set("service", service)
		}
		if scope != "" {
			form.Set("scope", scope)
		}
		body = strings.NewReader(form.Encode())
	} else {
		q := u.Query()
		if service != "" {
			q.Set("service", service)
		}
		for _, s := range strings.Fields(scope) {
			q.Add("scope", s)
		}
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return tr, backoff.Permanent(err)
	}
	req.Header.Set("User-Agent", c.userAgent())
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Accept-Encoding", "identity")
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodGet && (cred.Username != "" || cred.Password != "") {
		if err := c.checkBasicAllowed(u.Scheme, u.Host); err != nil {
			return tr, backoff.Permanent(err)
		}
		req.SetBasicAuth(cred.Username, cred.Password)
	}
	resp, err := c.send(ctx, req)
	if err != nil {
		return tr, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ce := newClientError(resp)
		if ce.Temporary() {
			return tr, ce
		}
		return tr, backoff.Permanent(ce)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil {
		return tr, err
	}
	if len(b) > maxTokenResponse {
		return tr, backoff.Permanent(fmt.Errorf("%w: token response over %d bytes", ErrTooLarge, maxTokenResponse))
	}
	if err := json.Unmarshal(b, &tr); err != nil {
		return tr, backoff.Permanent(fmt.Errorf("%w: token response is not JSON", ErrProtocol))
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	if tok == "" || len(tok) > maxTokenLength || !isHeaderSafe(tok) {
		return tr, backoff.Permanent(fmt.Errorf("%w: token response has no usable token", ErrProtocol))
	}
	return tr, nil
}

// isHeaderSafe reports whether s is visible ASCII (no spaces, no control
// characters), safe to put in an Authorization header.
func isHeaderSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
