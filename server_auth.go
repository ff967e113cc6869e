package registry

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/image-spec/specs-go"
)

// ServerAuth turns on authentication in a [Server], for testing clients
// against realistic registry auth. By default the server behaves like
// Docker Hub or GHCR: an unauthenticated request gets 401 with a Bearer
// challenge (realm /token on the same server, the service name, the
// scope), and the built-in token endpoint issues opaque random tokens:
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
	// Users maps user names to their passwords and permissions.
	Users map[string]ServerUser
	// TokenLifetime is how long tokens last. If zero, 5 minutes. Short
	// lifetimes let tests cover expiry; expires_in is rounded up to seconds.
	TokenLifetime time.Duration
	// Basic selects Basic-only authentication: no tokens.
	Basic bool

	mu     sync.Mutex
	grants map[string]grant
}

// ServerUser is a user of a [ServerAuth].
type ServerUser struct {
	// Password is the user's password.
	Password string
	// Repositories lists what the user may pull; "*" means every repository
	// and the catalog.
	Repositories []string
	// RefreshToken, when not empty, is accepted by the OAuth2 form
	// (grant_type=refresh_token) as this user's identity token.
	RefreshToken string
}

type grant struct {
	user    string // "" for anonymous
	scopes  map[string]bool
	expires time.Time
}

func (a *ServerAuth) tokenPath() string { return "/token" }

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
		list = a.Users[user].Repositories
	}
	if scope == catalogScope {
		for _, r := range list {
			if r == "*" {
				return true
			}
		}
		return false
	}
	typ, name, actions, ok := parseScope(scope)
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

func (a *ServerAuth) checkPassword(user, pass string) bool {
	u, ok := a.Users[user]
	return ok && subtle.ConstantTimeCompare([]byte(u.Password), []byte(pass)) == 1
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
	a := s.Auth
	if a == nil {
		return true
	}
	if a.Basic {
		user, pass, ok := r.BasicAuth()
		if !ok || !a.checkPassword(user, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+a.service()+`"`)
			writeError(w, http.StatusUnauthorized, CodeUnauthorized, "authentication required")
			return false
		}
		if scope != "" && !a.allowed(user, scope) {
			writeError(w, http.StatusForbidden, CodeDenied, "requested access to the resource is denied")
			return false
		}
		return true
	}
	challenge := func(extra string) {
		v := fmt.Sprintf(`Bearer realm="%s",service="%s"`, realmFor(r, a.tokenPath()), a.service())
		if scope != "" {
			v += fmt.Sprintf(`,scope="%s"`, scope)
		}
		w.Header().Set("WWW-Authenticate", v+extra)
	}
	h := r.Header.Get("Authorization")
	tok, isBearer := strings.CutPrefix(h, "Bearer ")
	if !isBearer {
		challenge("")
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "authentication required")
		return false
	}
	a.mu.Lock()
	g, ok := a.grants[tok]
	a.mu.Unlock()
	if !ok || time.Now().After(g.expires) {
		challenge(`,error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "invalid or expired token")
		return false
	}
	if scope == "" || g.scopes[scope] {
		return true
	}
	challenge(`,error="insufficient_scope"`)
	if g.user == "" {
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "authentication required")
	} else {
		writeError(w, http.StatusForbidden, CodeDenied, "requested access to the resource is denied")
	}
	return false
}

// serveToken is the token endpoint described on ServerAuth.
func (a *ServerAuth) serveToken(w http.ResponseWriter, r *http.Request) {
	if a.Basic {
		writeError(w, http.StatusNotFound, CodeUnsupported, "token endpoint disabled in Basic mode")
		return
	}
	var user string
	var scopes []string
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		if u, p, ok := r.BasicAuth(); ok {
			if !a.checkPassword(u, p) {
				writeError(w, http.StatusUnauthorized, CodeUnauthorized, "invalid username or password")
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
			writeError(w, http.StatusBadRequest, CodeUnsupported, "bad form")
			return
		}
		switch r.PostForm.Get("grant_type") {
		case "password":
			u, p := r.PostForm.Get("username"), r.PostForm.Get("password")
			if !a.checkPassword(u, p) {
				writeError(w, http.StatusUnauthorized, CodeUnauthorized, "invalid username or password")
				return
			}
			user = u
		case "refresh_token":
			rt := r.PostForm.Get("refresh_token")
			for name, u := range a.Users {
				if u.RefreshToken != "" && subtle.ConstantTimeCompare([]byte(u.RefreshToken), []byte(rt)) == 1 {
					user = name
				}
			}
			if user == "" {
				writeError(w, http.StatusUnauthorized, CodeUnauthorized, "invalid refresh token")
				return
			}
		default:
			writeError(w, http.StatusBadRequest, CodeUnsupported, "unsupported grant_type")
			return
		}
		scopes = strings.Fields(r.PostForm.Get("scope"))
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, CodeUnsupported, "method not allowed")
		return
	}
	g := grant{user: user, scopes: map[string]bool{}, expires: time.Now().Add(a.lifetime())}
	for _, s := range scopes {
		if len(g.scopes) < 64 && a.allowed(user, s) {
			// Granted as the scope the registry checks: what a read-only
			// server grants of "repository:x:pull,push" is pull.
			if s != catalogScope {
				s = s[:strings.LastIndexByte(s, ':')] + ":pull"
			}
			g.scopes[s] = true
		}
	}
	var raw [32]byte
	rand.Read(raw[:])
	tok := hex.EncodeToString(raw[:])
	a.mu.Lock()
	if a.grants == nil {
		a.grants = map[string]grant{}
	}
	now := time.Now()
	for t, old := range a.grants {
		if now.After(old.expires) {
			delete(a.grants, t)
		}
	}
	a.grants[tok] = g
	a.mu.Unlock()
	secs := int64((a.lifetime() + time.Second - 1) / time.Second)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, r, "application/json", map[string]any{
		"token": tok, "access_token": tok, "expires_in": secs, "issued_at": now.UTC().Format(time.RFC3339),
	})
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func specsVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }
