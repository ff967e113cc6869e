package interop

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/mirror"
	"github.com/ocipull/registry/oci"
)

// TestFiftyRepositoriesOneRegistry: 50 repositories of the reference
// registry (token auth), pulled at once by one program through one
// registry.Registry, open at most MaxConnsPerHost connections and ask
// for one token per distinct scope; the cache in front of the same
// registry does the same toward it for 50 repositories pulled through it.
func TestFiftyRepositoriesOneRegistry(t *testing.T) {
	const repos, maxConns = 50, 4
	c := makeContent(t, false)
	check := func(t *testing.T, pullHost string, creds registry.CredentialSource, conns func() int64, ti *tokenIssuer, limit int) {
		before := conns()
		reg := &registry.Registry{Scheme: "http", Host: pullHost, Credentials: creds, MaxConnsPerHost: maxConns}
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make(chan error, repos)
		for i := range repos {
			wg.Go(func() {
				repo := reg.Repository(fmt.Sprintf("fifty/r%02d", i))
				ref, err := repo.Read(ctx, "oci")
				if err != nil {
					errs <- err
					return
				}
				img := ref.(*oci.Image)
				for _, d := range img.Blobs() {
					rc, err := img.OpenBlob(ctx, d)
					if err != nil {
						errs <- err
						return
					}
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := conns() - before; got > int64(limit) {
			t.Errorf("%d connections to the registry, want at most %d", got, limit)
		}
		for scope, n := range ti.scopeCounts() {
			if n != 1 {
				t.Errorf("scope %q: %d token requests, want 1", scope, n)
			}
		}
		if n := len(ti.scopeCounts()); n != repos {
			t.Errorf("%d distinct scopes asked for, want %d", n, repos)
		}
	}
	// filled starts a token-auth reference registry holding the
	// repositories, its token requests forgotten.
	filled := func(t *testing.T) (*httptest.Server, *tokenIssuer, *atomic.Int64) {
		rr, ti, conns := tokenRegistryCounting(t)
		for i := range repos {
			push(t, hostOf(t, rr), fmt.Sprintf("fifty/r%02d", i), c, &authn.Basic{Username: ti.user, Password: ti.pass})
		}
		ti.mu.Lock()
		ti.scopes = nil
		ti.mu.Unlock()
		return rr, ti, conns
	}
	t.Run("one Registry", func(t *testing.T) {
		rr, ti, conns := filled(t)
		check(t, hostOf(t, rr), registry.StaticCredentials(ti.user, ti.pass), conns.Load, ti, maxConns)
	})
	t.Run("through the cache", func(t *testing.T) {
		rr, ti, conns := filled(t)
		m, err := mirror.Open(t.TempDir(), mirror.Config{Upstreams: map[string]mirror.Upstream{
			"": {URL: rr.URL, Credentials: registry.StaticCredentials(ti.user, ti.pass), MaxConns: maxConns},
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		ms := httptest.NewServer(m)
		defer ms.Close()
		check(t, hostOf(t, ms), nil, conns.Load, ti, maxConns)
	})
}
