package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/ocipull/registry/oci"
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
// as in [Registry.Host]). Returning the zero Credential and a nil error means
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
// and password for the Client's registry (and the token realms it names),
// whatever its host. [Registry.Mirrors] never get them: a mirror that needs
// a login needs a source that answers for its host ([DockerConfig] or a
// [CredentialFunc]).
func StaticCredentials(username, password string) CredentialSource {
	return registryCredentials{Credential{Username: username, Password: password}}
}

// IdentityToken is a [CredentialSource] that supplies an OAuth2 refresh
// token (as "docker login" stores it) for the Client's registry; like
// [StaticCredentials], never for its mirrors.
func IdentityToken(token string) CredentialSource {
	return registryCredentials{Credential{IdentityToken: token}}
}

// registryCredentials answers for any host it is asked about, so only the
// registry's transport asks it (see newTransport).
type registryCredentials struct{ cred Credential }

func (r registryCredentials) Credential(context.Context, string) (Credential, error) {
	return r.cred, nil
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

// authState is one transport's authorization state: what the registry
// asked for, and the tokens it granted. Nothing here is shared between
// clients.
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

// credential looks up the credentials once and remembers the answer (a
// lookup cut short by the caller's context is not remembered).
func (t *transport) credential(ctx context.Context) (Credential, error) {
	a := &t.auth
	a.credMu.Lock()
	defer a.credMu.Unlock()
	if a.credOK || t.creds == nil {
		return a.cred, a.credErr
	}
	cred, err := t.creds.Credential(ctx, t.host)
	if err != nil {
		if ctx.Err() != nil {
			return Credential{}, err
		}
		cred = Credential{}
	}
	a.cred, a.credErr, a.credOK = cred, err, true
	return a.cred, a.credErr
}

// authorize adds the Authorization header the registry asked for earlier:
// a cached or freshly fetched token for scope, or Basic credentials.
// Before any challenge it adds nothing.
func (t *transport) authorize(ctx context.Context, req *http.Request, scope string) error {
	a := &t.auth
	a.mu.Lock()
	bearer, basic := a.bearer, a.basic
	a.mu.Unlock()
	switch {
	case bearer != nil:
		tok, err := t.token(ctx, bearer, scope, scope, false)
		if err != nil {
			return err
		}
		req.Header["Authorization"] = []string{"Bearer " + tok}
	case basic:
		cred, _ := t.credential(ctx)
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
func (t *transport) challenge(ctx context.Context, resp *http.Response, scope string, ce *ClientError) (bool, error) {
	cs, perr := parseChallenges(resp.Header.Values("WWW-Authenticate"))
	bearer, basic := pickChallenges(cs)
	if resp.StatusCode == http.StatusForbidden && (bearer == nil || bearer.Params["error"] != "insufficient_scope") {
		return false, nil
	}
	switch {
	case bearer != nil:
		return t.answerBearer(ctx, bearer, scope)
	case basic != nil:
		return t.answerBasic(ctx, ce)
	case perr != nil:
		return false, backoff.Permanent(fmt.Errorf("%w: %w: %v", ce, ErrProtocol, perr))
	}
	return false, nil
}

// pickChallenges finds the first Bearer and the first Basic challenge.
func pickChallenges(cs []challenge) (bearer, basic *challenge) {
	for i := range cs {
		switch {
		case cs[i].Scheme == "bearer" && bearer == nil:
			bearer = &cs[i]
		case cs[i].Scheme == "basic" && basic == nil:
			basic = &cs[i]
		}
	}
	return bearer, basic
}

func (t *transport) answerBearer(ctx context.Context, bearer *challenge, scope string) (bool, error) {
	if err := t.checkRealm(bearer.Params["realm"]); err != nil {
		return false, backoff.Permanent(err)
	}
	t.auth.mu.Lock()
	t.auth.bearer = bearer
	t.auth.mu.Unlock()
	// The challenge's own scope is passed through unchanged (it may be
	// wider, as after insufficient_scope); without one, the request's.
	ask := scope
	if s := bearer.Params["scope"]; s != "" {
		ask = s
	}
	if _, err := t.token(ctx, bearer, scope, ask, true); err != nil {
		return false, err
	}
	return true, nil
}

func (t *transport) answerBasic(ctx context.Context, ce *ClientError) (bool, error) {
	cred, credErr := t.credential(ctx)
	if cred.Username == "" && cred.Password == "" {
		if credErr != nil {
			return false, backoff.Permanent(fmt.Errorf("%w (and looking up credentials failed: %v)", ce, credErr))
		}
		return false, nil
	}
	if err := t.checkBasicAllowed(t.currentScheme(), t.host); err != nil {
		return false, backoff.Permanent(err)
	}
	t.auth.mu.Lock()
	t.auth.basic = true
	t.auth.mu.Unlock()
	return true, nil
}

// checkRealm refuses realms that are not absolute http(s) URLs, plain HTTP
// realms for a registry reached over HTTPS (a downgrade that would expose
// credentials and tokens) unless on a loopback host, and realms on
// internal addresses for a registry that is not itself internal (see
// [isInternalHost]; the address actually dialled is checked too).
func (t *transport) checkRealm(realm string) error {
	u, err := url.Parse(realm)
	if err != nil || realm == "" || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil {
		return fmt.Errorf("%w: bearer challenge realm %q is not an absolute http(s) URL", ErrProtocol, printable(realm, 120))
	}
	if u.Scheme == "http" && t.currentScheme() == "https" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%w: refusing plain-HTTP token realm %s for an HTTPS registry", ErrProtocol, redactURL(u))
	}
	if isInternalHost(u.Hostname()) && !t.registryInternal() {
		return fmt.Errorf("%w: refusing token realm %s on an internal address for registry %s", ErrProtocol, redactURL(u), printable(t.host, 80))
	}
	return nil
}

// registryInternal reports whether the registry itself is on an internal
// host: then its realms and redirects may be internal too.
func (t *transport) registryInternal() bool { return t.internal }

// checkBasicAllowed refuses to send Basic credentials over plain HTTP,
// except to a loopback host, or to the registry's own host when
// AllowBasicOverHTTP is set (never to another host it points at).
func (t *transport) checkBasicAllowed(scheme, host string) error {
	if scheme == "https" || isLoopback(hostOnly(host)) {
		return nil
	}
	if t.basicOverHTTP && strings.EqualFold(hostOnly(host), hostOnly(t.host)) {
		return nil
	}
	return fmt.Errorf("%w: refusing to send credentials over plain HTTP to %s (set AllowBasicOverHTTP to permit it for the registry's own host)", ErrUnauthorized, printable(host, 80))
}

// token returns a token for scope (the scope a request needs, the cache
// key) from the realm and service of the bearer challenge ch: from the
// cache unless stale or refresh is set, else fetched once (asking for ask,
// which is scope itself or, right after a challenge, the challenge's own
// scope). One fetch runs at a time per key and every goroutine that needs
// the key waits for it; a waiter whose own context is live does not fail
// with the fetcher's cancellation, it fetches for itself.
func (t *transport) token(ctx context.Context, ch *challenge, scope, ask string, refresh bool) (string, error) {
	a := &t.auth
	key := tokenKey{realm: ch.Params["realm"], service: ch.Params["service"], scope: scope}
	for {
		a.mu.Lock()
		e := a.tokens[key]
		if e != nil {
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
				if e.err != nil && isCancellation(e.err) && ctx.Err() == nil {
					refresh = false
					continue // the fetcher gave up, not the realm: try again
				}
				return e.token, e.err
			}
		}
		e = &tokenEntry{done: make(chan struct{})}
		if len(a.tokens) >= maxCachedTokens {
			a.pruneTokens()
		}
		a.tokens[key] = e
		a.mu.Unlock()

		e.token, e.renewAt, e.err = t.fetchToken(ctx, ch.Params["realm"], ch.Params["service"], ask)
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
}

// maxCachedTokens bounds a Registry's token cache (one entry per realm,
// service and scope): a program touching more repositories than this
// fetches tokens again for the ones pruned.
const maxCachedTokens = 1024

// pruneTokens makes room in the token cache (a.mu held): stale and failed
// entries go first; if none is, the settled entry renewed soonest goes.
// Fetches under way are kept.
func (a *authState) pruneTokens() {
	now := time.Now()
	var oldest tokenKey
	var oldestAt time.Time
	found := false
	for k, e := range a.tokens {
		select {
		case <-e.done:
		default:
			continue
		}
		if e.err != nil || !now.Before(e.renewAt) {
			delete(a.tokens, k)
			continue
		}
		if !found || e.renewAt.Before(oldestAt) {
			oldest, oldestAt, found = k, e.renewAt, true
		}
	}
	if len(a.tokens) >= maxCachedTokens && found {
		delete(a.tokens, oldest)
	}
}

// isCancellation reports an error caused by a context ending.
func isCancellation(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// tokenResponse is the token endpoint's answer (Docker registry token
// authentication; OAuth2 for the POST form).
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// fetchToken asks the realm for a token, once (the attempt that needs it
// is what is retried), returning it and when to renew it. A temporary
// failure is returned as such, for the retry loop.
func (t *transport) fetchToken(ctx context.Context, realm, service, scope string) (string, time.Time, error) {
	cred, credErr := t.credential(ctx)
	tr, err := t.tokenExchange(ctx, realm, service, scope, cred)
	if err != nil {
		var perm *backoff.PermanentError
		permanent := errors.As(err, &perm)
		err = fmt.Errorf("fetching token for %s from %s: %w", printable(scope, 200), redactURL(mustParse(realm)), unwrapPermanent(err))
		if credErr != nil {
			err = fmt.Errorf("%w (and looking up credentials failed: %v)", err, credErr)
		}
		if permanent {
			err = backoff.Permanent(err)
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
	margin := min(lifetime/4, maxTokenMargin)
	return tok, time.Now().Add(lifetime - margin), nil
}

// tokenExchange makes the token request: the OAuth2 POST for an identity
// token (falling back to GET when the realm refuses POST), else a GET.
func (t *transport) tokenExchange(ctx context.Context, realm, service, scope string, cred Credential) (tokenResponse, error) {
	if cred.IdentityToken == "" {
		return t.tokenRequest(ctx, http.MethodGet, realm, service, scope, cred)
	}
	tr, err := t.tokenRequest(ctx, http.MethodPost, realm, service, scope, cred)
	var ce *ClientError
	if errors.As(err, &ce) && (ce.StatusCode == http.StatusNotFound || ce.StatusCode == http.StatusMethodNotAllowed || ce.StatusCode == http.StatusBadRequest) {
		return t.tokenRequest(ctx, http.MethodGet, realm, service, scope, cred)
	}
	return tr, err
}

func mustParse(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		return &url.URL{}
	}
	return u
}

// newTokenRequest builds one token request. GET sends service and scope
// in the query with Basic credentials when there are any; POST sends the
// OAuth2 refresh-token form.
func (t *transport) newTokenRequest(ctx context.Context, method, realm, service, scope string, cred Credential) (*http.Request, error) {
	u, err := url.Parse(realm)
	if err != nil {
		return nil, backoff.Permanent(err)
	}
	var body io.Reader
	if method == http.MethodPost {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cred.IdentityToken}, "client_id": {oauthClientID}}
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
	if !t.registryInternal() {
		ctx = withDialCheck(ctx)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, backoff.Permanent(err)
	}
	if t.isOrigin(u) {
		t.addHeader(req.Header) // a realm on the endpoint's own origin
	}
	req.Header.Set("User-Agent", t.userAgent)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Accept-Encoding", "identity")
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodGet && (cred.Username != "" || cred.Password != "") {
		if err := t.checkBasicAllowed(u.Scheme, u.Host); err != nil {
			return nil, backoff.Permanent(err)
		}
		req.SetBasicAuth(cred.Username, cred.Password)
	}
	return req, nil
}

// tokenRequest makes one token request and reads its answer. Redirects
// are not followed. A 401 or 403 from the realm means the credentials
// were refused: the error wraps ErrUnauthorized.
func (t *transport) tokenRequest(ctx context.Context, method, realm, service, scope string, cred Credential) (tokenResponse, error) {
	var tr tokenResponse
	req, err := t.newTokenRequest(ctx, method, realm, service, scope, cred)
	if err != nil {
		return tr, err
	}
	resp, err := t.send(req)
	if err != nil {
		return tr, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ce := newClientError(resp)
		switch {
		case ce.Temporary():
			return tr, ce
		case isAuthRefusal(ce.StatusCode):
			return tr, backoff.Permanent(&tokenRefusal{ce})
		}
		return tr, backoff.Permanent(ce)
	}
	b, err := readAllCapped(resp.Body, resp.ContentLength, maxTokenResponse)
	if errors.Is(err, oci.ErrTooLarge) {
		return tr, backoff.Permanent(fmt.Errorf("token response: %w", err))
	}
	if err != nil {
		return tr, err
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

// tokenRefusal is the token endpoint refusing the credentials (401 or 403
// from the realm): it matches ErrUnauthorized, whatever the status, so
// that a wrong password is reported as one and not as a registry that
// denies a repository.
type tokenRefusal struct{ *ClientError }

func (e *tokenRefusal) Error() string {
	return "the token endpoint refused the credentials: " + e.ClientError.Error()
}

func (e *tokenRefusal) Is(target error) bool { return target == ErrUnauthorized }

// As reaches the refusal's *ClientError (status, codes) for errors.As,
// without letting errors.Is match it as ErrDenied.
func (e *tokenRefusal) As(target any) bool {
	if p, ok := target.(**ClientError); ok {
		*p = e.ClientError
		return true
	}
	return false
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
