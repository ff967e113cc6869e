package registry

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ocipull/registry/internal/wire"

	"github.com/opencontainers/image-spec/specs-go"
)

// ServerAuth turns on authentication in a [Server], for testing clients
// against realistic registry auth. By default the server behaves like
// Docker Hub or GHCR: an unauthenticated request gets 401 with a Bearer
// challenge (realm /token on the same server, the service name, the
// scope), and the built-in token endpoint issues signed, self-describing
// tokens (HMAC-SHA256 under a key made at first use), so the server keeps
// no state per token and a flood of token requests costs nothing:
//
//   - GET /token?service=..&scope=.. anonymously or with Basic credentials;
//   - POST /token with the OAuth2 form: grant_type=password (username,
//     password) or grant_type=refresh_token (a user's RefreshToken).
//
// A token grants pull on the requested repositories the user (or, without
// credentials, anyone) may pull, and nothing else. Every registry request
// checks its token: unknown or expired tokens get a new challenge; a valid
// token without the repository's scope gets 401 (anonymous) or 403 DENIED
// (a user), with error="insufficient_scope" in the challenge.
//
// With Basic set, the server asks for HTTP Basic credentials on every
// request instead, as ECR and some private registries do.
//
// Set the fields before serving; they must not change afterwards.
type ServerAuth struct {
	// Service is the service name in challenges and tokens. If empty,
	// "ocipull-registry".
	Service string
	// Anonymous lists the repositories anyone may pull without
	// credentials; "*" means all of them.
	Anonymous []string
	// Users maps user names to their passwords and permissions. Passwords
	// and refresh tokens are compared in constant time, with no length or
	// user-existence leak.
	Users map[string]ServerUser
	// TokenLifetime is how long tokens last. If zero, 5 minutes. Short
	// lifetimes let tests cover expiry; expires_in is rounded up to seconds.
	TokenLifetime time.Duration
	// Basic selects Basic-only authentication: no tokens.
	Basic bool
	// Verify, when not nil, checks a user's password instead of Users'
	// Password fields: the hook for a password file (Apache htpasswd with
	// bcrypt, as `ocipull mirror --htpasswd` reads it) or a directory,
	// so that this package needs no password-hashing dependency. What a
	// user may pull still comes from Users (a user absent from it may pull
	// what the entry "*" grants, or nothing); RefreshToken logins are
	// unaffected. It must be safe for
	// concurrent use and take about as long for an unknown user as for a
	// known one.
	Verify func(user, password string) bool

	keyOnce sync.Once
	key     [32]byte // signs tokens
}

// ServerUser is a user of a [ServerAuth].
type ServerUser struct {
	// Password is the user's password. Empty turns password login off for
	// the user (one who has only a RefreshToken), never an empty password.
	Password string
	// Repositories lists what the user may pull; "*" means every repository
	// and the catalog.
	Repositories []string
	// RefreshToken, when not empty, is accepted by the OAuth2 form
	// (grant_type=refresh_token) as this user's identity token.
	RefreshToken string
}

// grant is what a token carries: who, which scopes, until when.
type grant struct {
	User    string   `json:"u,omitempty"` // "" for anonymous
	Scopes  []string `json:"s"`
	Expires int64    `json:"e"` // Unix milliseconds
}

func (g *grant) has(scope string) bool {
	for _, s := range g.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// TokenPath is the path of the token endpoint on the server's own origin,
// where [ServerAuth.ServeToken] answers.
func (a *ServerAuth) TokenPath() string { return "/token" }

func (a *ServerAuth) service() string {
	if a.Service == "" {
		return "ocipull-registry"
	}
	return a.Service
}

func (a *ServerAuth) lifetime() time.Duration {
	if a.TokenLifetime <= 0 {
		return 5 * time.Minute
	}
	return a.TokenLifetime
}

// allowed reports whether user ("" for anonymous) may have scope.
func (a *ServerAuth) allowed(user, scope string) bool {
	list := a.Anonymous
	if user != "" {
		u, listed := a.Users[user]
		if !listed && a.Verify != nil {
			u = a.Users["*"] // users of a password file not listed one by one
		}
		list = u.Repositories
	}
	if scope == wire.CatalogScope {
		for _, r := range list {
			if r == "*" {
				return true
			}
		}
		return false
	}
	typ, name, actions, ok := wire.ParseScope(scope)
	if !ok || typ != "repository" {
		return false
	}
	pull := false
	for _, act := range actions {
		if act == "pull" || act == "*" {
			pull = true
		}
	}
	if !pull {
		return false
	}
	for _, r := range list {
		if r == "*" || r == name {
			return true
		}
	}
	return false
}

// checkPassword compares in constant time: both sides are hashed first
// (no length leak), an unknown user is compared against a dummy (no
// user-existence leak), and an empty configured password never matches.
func (a *ServerAuth) checkPassword(user, pass string) bool {
	if a.Verify != nil {
		return pass != "" && a.Verify(user, pass)
	}
	u, known := a.Users[user]
	return secretMatches(u.Password, pass) && known
}

// secretMatches compares configured and offered secrets in constant time;
// an empty configured secret matches nothing.
func secretMatches(configured, offered string) bool {
	want := sha256.Sum256([]byte("ocipull-secret\x00" + configured))
	got := sha256.Sum256([]byte("ocipull-secret\x00" + offered))
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1 && configured != ""
}

// signingKey is the token key, made once.
func (a *ServerAuth) signingKey() []byte {
	a.keyOnce.Do(func() { rand.Read(a.key[:]) })
	return a.key[:]
}

// signToken encodes g as payload.signature, both base64url.
func (a *ServerAuth) signToken(g grant) string {
	payload, _ := json.Marshal(g)
	mac := hmac.New(sha256.New, a.signingKey())
	p := base64.RawURLEncoding.EncodeToString(payload)
	mac.Write([]byte(p))
	return p + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// parseToken verifies a token's signature and expiry.
func (a *ServerAuth) parseToken(tok string) (grant, bool) {
	var g grant
	p, sig, ok := strings.Cut(tok, ".")
	if !ok || len(tok) > 8<<10 {
		return g, false
	}
	// Compare the encoded signature, not the decoded bytes: a decoder
	// ignores the unused low bits of the last character, so several
	// spellings decode to the same MAC, and only the one we issued may pass.
	mac := hmac.New(sha256.New, a.signingKey())
	mac.Write([]byte(p))
	want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return g, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil || json.Unmarshal(payload, &g) != nil || time.Now().UnixMilli() >= g.Expires {
		return g, false
	}
	return g, true
}

// bearerToken reads "Bearer <token>" with the scheme matched
// case-insensitively (RFC 9110 section 11.1).
func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

func realmFor(r *http.Request, path string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + path
}

// authorize checks r for scope ("" for /v2/, which needs any valid
// authentication) and writes the refusal when it fails.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, scope string) bool {
	return s.Auth.Authorize(w, r, scope)
}

// Authorize checks r for scope (a token scope such as
// "repository:team/app:pull"; "" for the API root, which needs any valid
// authentication) and, when it fails, writes the refusal (401 with a
// challenge, or 403) and reports false. It is how a handler other than
// [Server] (a pull-through cache) authenticates its clients the same way.
// A nil ServerAuth lets everything in. When w is the recorder a handler
// logs through, the user is noted on it.
func (a *ServerAuth) Authorize(w http.ResponseWriter, r *http.Request, scope string) bool {
	if a == nil {
		return true
	}
	if a.Basic {
		user, pass, ok := r.BasicAuth()
		if !ok || !a.checkPassword(user, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+a.service()+`"`)
			wire.WriteError(w, http.StatusUnauthorized, wire.CodeUnauthorized, "authentication required")
			return false
		}
		if scope != "" && !a.allowed(user, scope) {
			wire.WriteError(w, http.StatusForbidden, wire.CodeDenied, "requested access to the resource is denied")
			return false
		}
		wire.NoteUser(w, user)
		return true
	}
	challenge := func(extra string) {
		v := fmt.Sprintf(`Bearer realm="%s",service="%s"`, realmFor(r, a.TokenPath()), a.service())
		if scope != "" {
			v += fmt.Sprintf(`,scope="%s"`, scope)
		}
		w.Header().Set("WWW-Authenticate", v+extra)
	}
	tok, isBearer := bearerToken(r.Header.Get("Authorization"))
	if !isBearer {
		challenge("")
		wire.WriteError(w, http.StatusUnauthorized, wire.CodeUnauthorized, "authentication required")
		return false
	}
	g, ok := a.parseToken(tok)
	if !ok {
		challenge(`,error="invalid_token"`)
		wire.WriteError(w, http.StatusUnauthorized, wire.CodeUnauthorized, "invalid or expired token")
		return false
	}
	if scope == "" || g.has(scope) {
		wire.NoteUser(w, g.User)
		return true
	}
	challenge(`,error="insufficient_scope"`)
	if g.User == "" {
		wire.WriteError(w, http.StatusUnauthorized, wire.CodeUnauthorized, "authentication required")
	} else {
		wire.WriteError(w, http.StatusForbidden, wire.CodeDenied, "requested access to the resource is denied")
	}
	return false
}

// ServeToken is the token endpoint described on [ServerAuth], for a
// handler that serves it at [ServerAuth.TokenPath].
func (a *ServerAuth) ServeToken(w http.ResponseWriter, r *http.Request) {
	if a.Basic {
		wire.WriteError(w, http.StatusNotFound, wire.CodeUnsupported, "token endpoint disabled in Basic mode")
		return
	}
	var user string
	var scopes []string
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		if u, p, ok := r.BasicAuth(); ok {
			if !a.checkPassword(u, p) {
				wire.WriteError(w, http.StatusUnauthorized, wire.CodeUnauthorized, "invalid username or password")
				return
			}
			user = u
		}
		for _, s := range q["scope"] {
			scopes = append(scopes, strings.Fields(s)...)
		}
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			wire.WriteError(w, http.StatusBadRequest, wire.CodeUnsupported, "bad form")
			return
		}
		switch r.PostForm.Get("grant_type") {
		case "password":
			u, p := r.PostForm.Get("username"), r.PostForm.Get("password")
			if !a.checkPassword(u, p) {
				wire.WriteError(w, http.StatusUnauthorized, wire.CodeUnauthorized, "invalid username or password")
				return
			}
			user = u
		case "refresh_token":
			rt := r.PostForm.Get("refresh_token")
			for name, u := range a.Users {
				if secretMatches(u.RefreshToken, rt) {
					user = name
				}
			}
			if user == "" {
				wire.WriteError(w, http.StatusUnauthorized, wire.CodeUnauthorized, "invalid refresh token")
				return
			}
		default:
			wire.WriteError(w, http.StatusBadRequest, wire.CodeUnsupported, "unsupported grant_type")
			return
		}
		scopes = strings.Fields(r.PostForm.Get("scope"))
	default:
		w.Header().Set("Allow", "GET, POST")
		wire.WriteError(w, http.StatusMethodNotAllowed, wire.CodeUnsupported, "method not allowed")
		return
	}
	wire.NoteUser(w, user)
	now := time.Now()
	g := grant{User: user, Scopes: []string{}, Expires: now.Add(a.lifetime()).UnixMilli()}
	for _, s := range scopes {
		if len(g.Scopes) < 64 && a.allowed(user, s) {
			// Granted as the scope the registry checks: what a read-only
			// server grants of "repository:x:pull,push" is pull.
			if typ, name, _, ok := wire.ParseScope(s); ok && typ == "repository" {
				s = wire.PullScope(name)
			}
			if !g.has(s) {
				g.Scopes = append(g.Scopes, s)
			}
		}
	}
	tok := a.signToken(g)
	secs := int64((a.lifetime() + time.Second - 1) / time.Second)
	w.Header().Set("Cache-Control", "no-store")
	wire.WriteJSON(w, r, "application/json", map[string]any{
		"token": tok, "access_token": tok, "expires_in": secs, "issued_at": now.UTC().Format(time.RFC3339),
	})
}

func specsVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }
