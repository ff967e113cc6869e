package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// tokenIssuer is a minimal Docker token server for the reference registry's
// token auth: it checks Basic credentials and issues ES256 JWTs (kid-signed,
// the key published to the registry as a JWKS) granting what was asked.
type tokenIssuer struct {
	key            *ecdsa.PrivateKey
	user, pass     string
	issuer, kid    string
	service        string
	requests       atomic.Int64
	anonymousPulls bool

	mu     sync.Mutex
	scopes map[string]int // token requests per scope set asked for
}

// scopeCounts returns how many token requests asked for each scope set.
func (ti *tokenIssuer) scopeCounts() map[string]int {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	out := map[string]int{}
	for k, v := range ti.scopes {
		out[k] = v
	}
	return out
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (ti *tokenIssuer) jwks() []byte {
	// The uncompressed point is 0x04 || X || Y, 32 bytes each for P-256.
	point, err := ti.key.PublicKey.Bytes()
	if err != nil || len(point) != 65 {
		panic(fmt.Sprintf("encoding the public key: %v", err))
	}
	k := map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "kid": ti.kid, "alg": "ES256", "use": "sig",
		"x": b64(point[1:33]), "y": b64(point[33:]),
	}}}
	b, _ := json.Marshal(k)
	return b
}

func (ti *tokenIssuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ti.requests.Add(1)
	ti.mu.Lock()
	if ti.scopes == nil {
		ti.scopes = map[string]int{}
	}
	ti.scopes[strings.Join(r.URL.Query()["scope"], " ")]++
	ti.mu.Unlock()
	u, p, ok := r.BasicAuth()
	if ok && (u != ti.user || p != ti.pass) || !ok && !ti.anonymousPulls {
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
		return
	}
	var access []map[string]any
	for _, s := range r.URL.Query()["scope"] {
		for _, one := range strings.Fields(s) {
			parts := strings.Split(one, ":")
			if len(parts) < 3 {
				continue
			}
			typ, nm, actions := parts[0], strings.Join(parts[1:len(parts)-1], ":"), strings.Split(parts[len(parts)-1], ",")
			if !ok {
				actions = []string{"pull"}
			}
			access = append(access, map[string]any{"type": typ, "name": nm, "actions": actions})
		}
	}
	now := time.Now()
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": ti.kid})
	claims, _ := json.Marshal(map[string]any{
		"iss": ti.issuer, "sub": u, "aud": ti.service, "exp": now.Add(5 * time.Minute).Unix(),
		"nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(), "jti": fmt.Sprint(now.UnixNano()), "access": access,
	})
	signing := b64(header) + "." + b64(claims)
	sum := sha256.Sum256([]byte(signing))
	rr, ss, err := ecdsa.Sign(rand.Reader, ti.key, sum[:])
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	sig := make([]byte, 64)
	rr.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	json.NewEncoder(w).Encode(map[string]any{"token": signing + "." + b64(sig), "expires_in": 300})
}

// TestReferenceRegistryTokenAuth runs the reference registry with its token
// auth against a token server of ours: content pushed by
// go-containerregistry, pulled by our client with one token per scope.
func TestReferenceRegistryTokenAuth(t *testing.T) {
	// The token endpoint shares the registry's host and port, as on many
	// registries: go-containerregistry refuses realms on other loopback
	// ports (its SSRF protection).
	rr, ti := tokenRegistry(t)
	host := hostOf(t, rr)

	c := makeContent(t, false)
	push(t, host, "tok/content", c, &authn.Basic{Username: ti.user, Password: ti.pass})

	ctx := context.Background()
	cl := (&registry.Registry{Scheme: "http", Host: host, Credentials: registry.StaticCredentials(ti.user, ti.pass)}).Repository("tok/content")
	before := ti.requests.Load()
	for tag, img := range c.images {
		want, _ := img.Digest()
		ref, err := cl.Read(ctx, tag+"@"+want.String())
		if err != nil {
			t.Fatalf("reference registry (token auth) disagrees: %s: %v", tag, err)
		}
		im := ref.(*oci.Image)
		for _, l := range im.Blobs() {
			if d := drain(t, im, l); d != l.Digest {
				t.Fatalf("%s: blob %s hashed to %s", tag, l.Digest, d)
			}
		}
	}
	if n := ti.requests.Load() - before; n != 1 {
		t.Errorf("token requests for a pull of %d images: got %d, want 1", len(c.images), n)
	}
	bad := (&registry.Registry{Scheme: "http", Host: host, Credentials: registry.StaticCredentials(ti.user, "wrong")}).Repository("tok/content")
	if _, err := bad.Read(ctx, "oci"); !errors.Is(err, registry.ErrUnauthorized) {
		t.Errorf("wrong password: got %v, want ErrUnauthorized", err)
	}
}
