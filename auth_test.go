package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

// authFixture serves "pub/img" (anonymous) and "priv/img" (alice only)
// behind the server's token auth.
func authFixture(t *testing.T, auth *registry.ServerAuth, layerSizes ...int) (*oci.Image, *faults.Injector, func(repo string) *registry.Client) {
	t.Helper()
	if len(layerSizes) == 0 {
		layerSizes = []int{5000, 5000}
	}
	mem := oci.NewMemory()
	img := newImage(t, mem, linuxAMD64, layerSizes...)
	s := registry.NewServer()
	s.Auth = auth
	mustAdd(t, s, "pub/img", "v1", img)
	mustAdd(t, s, "priv/img", "v1", img)
	mustAdd(t, s, "other/img", "v1", img)
	inj := &faults.Injector{Next: s}
	ts := serve(t, inj)
	return img, inj, func(repo string) *registry.Client { return clientFor(t, ts, repo) }
}

func defaultAuth() *registry.ServerAuth {
	return &registry.ServerAuth{
		Anonymous: []string{"pub/img"},
		Users: map[string]registry.ServerUser{
			"alice": {Password: "s3cret", Repositories: []string{"pub/img", "priv/img"}, RefreshToken: "refresh-alice"},
		},
	}
}

func pullAll(t *testing.T, c *registry.Client) error {
	t.Helper()
	ref, err := c.Read(context.Background(), "v1")
	if err != nil {
		return err
	}
	img := ref.(*oci.Image)
	for _, l := range img.Blobs() {
		b, err := readAll(t, img, l)
		if err != nil {
			return err
		}
		if digest.FromBytes(b) != l.Digest {
			t.Fatalf("blob %s: wrong bytes", l.Digest)
		}
	}
	return nil
}

func TestAuthEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name  string
		repo  string
		creds registry.CredentialSource
		basic bool
		want  error
	}{
		{"anonymous pull", "pub/img", nil, false, nil},
		{"user pull", "priv/img", registry.StaticCredentials("alice", "s3cret"), false, nil},
		{"identity token", "priv/img", registry.IdentityToken("refresh-alice"), false, nil},
		{"anonymous on private", "priv/img", nil, false, registry.ErrUnauthorized},
		{"wrong password", "priv/img", registry.StaticCredentials("alice", "wrong"), false, registry.ErrUnauthorized},
		{"no permission", "other/img", registry.StaticCredentials("alice", "s3cret"), false, registry.ErrDenied},
		{"failing helper, anonymous works", "pub/img", registry.CredentialFunc(func(context.Context, string) (registry.Credential, error) {
			return registry.Credential{}, errors.New("helper broke")
		}), false, nil},
		{"basic mode", "priv/img", registry.StaticCredentials("alice", "s3cret"), true, nil},
		{"basic mode wrong password", "priv/img", registry.StaticCredentials("alice", "nope"), true, registry.ErrUnauthorized},
		{"basic mode no permission", "other/img", registry.StaticCredentials("alice", "s3cret"), true, registry.ErrDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			auth := defaultAuth()
			auth.Basic = tc.basic
			_, inj, client := authFixture(t, auth)
			c := client(tc.repo)
			c.Registry().Credentials = tc.creds
			err := pullAll(t, c)
			if tc.want == nil && err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err != nil {
				t.Logf("error: %v", err)
			}
			if tc.want == nil && !tc.basic {
				// 1 challenged manifest request + 1 token + manifest + 3 blobs.
				if n, tok := inj.Requests(), inj.RequestsTo("/token"); tok != 1 || n != 6 {
					t.Errorf("requests: got %d (%d token), want 6 (1 token)", n, tok)
				}
			}
		})
	}
}

func TestAuthFailingHelperReported(t *testing.T) {
	_, _, client := authFixture(t, defaultAuth())
	c := client("priv/img")
	c.Registry().Credentials = registry.CredentialFunc(func(context.Context, string) (registry.Credential, error) {
		return registry.Credential{}, errors.New("helper broke")
	})
	err := pullAll(t, c)
	if !errors.Is(err, registry.ErrUnauthorized) {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "helper broke") {
		t.Errorf("error does not mention the helper's failure: %v", err)
	}
}

func TestAuthConcurrentPullsShareOneToken(t *testing.T) {
	_, inj, client := authFixture(t, defaultAuth())
	c := client("pub/img")
	// Learn the challenge first, then race 16 readers for the token.
	if _, err := c.Read(context.Background(), "v1"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pullAll(t, c); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := inj.RequestsTo("/token"); n != 1 {
		t.Errorf("token requests: got %d, want 1", n)
	}
}

func TestAuthTokenExpiryDuringLongRead(t *testing.T) {
	auth := defaultAuth()
	auth.TokenLifetime = time.Second
	_, inj, client := authFixture(t, auth, 2<<20)
	// The blob connection stalls after 1 MiB for longer than the token
	// lives; the resumption needs a fresh token.
	inj.Add(faults.Rule{Path: "/blobs/", Nth: 2, Fault: faults.StallAfter(1<<20, 1500*time.Millisecond)})
	c := client("pub/img")
	c.Registry().StallTimeout = 1200 * time.Millisecond
	if err := pullAll(t, c); err != nil {
		t.Fatal(err)
	}
	if n := inj.RequestsTo("/token"); n < 2 {
		t.Errorf("token requests: got %d, want at least 2 (a refresh)", n)
	}
}

func TestAuthNotSentToRedirectTarget(t *testing.T) {
	for _, sameHost := range []bool{false, true} {
		name := "other host"
		if sameHost {
			name = "same host, other port"
		}
		t.Run(name, func(t *testing.T) {
			var leaks int64
			storage := &faults.Injector{Next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "no blob here", http.StatusNotFound)
			})}
			img, inj, client := authFixture(t, defaultAuth())
			// Object storage serves the real blob bytes from the registry's
			// handler, but refuses any request carrying Authorization.
			plain := registry.NewServer()
			mustAdd(t, plain, "priv/img", "v1", img)
			storage.Next = plain
			storage.Add(faults.Rule{Fault: faults.RejectAuthorization(&leaks)})
			st := serve(t, storage)
			target := st.URL
			if !sameHost {
				target = fmt.Sprintf("http://localhost:%d", st.Listener.Addr().(*net.TCPAddr).Port)
			}
			inj.Add(faults.Rule{Path: "/blobs/", Fault: faults.Redirect(target)})
			c := client("priv/img")
			c.Registry().Credentials = registry.StaticCredentials("alice", "s3cret")
			err := pullAll(t, c)
			if atomic.LoadInt64(&leaks) != 0 {
				t.Fatalf("Authorization sent to the redirect target %d times", leaks)
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := storage.Requests(); n != 3 {
				t.Errorf("storage requests: got %d, want 3 (config and two layers)", n)
			}
		})
	}
}

func TestBasicRefusedOverPlainHTTPToRemoteHost(t *testing.T) {
	c := (&registry.Registry{Scheme: "http", Host: "registry.invalid:5000",
		Credentials: registry.StaticCredentials("u", "p"), GetBackOff: fastBackOff,
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Header.Get("Authorization") != "" {
				t.Errorf("credentials sent over plain HTTP")
			}
			h := http.Header{}
			h.Set("WWW-Authenticate", `Basic realm="x"`)
			return &http.Response{StatusCode: 401, Header: h, Body: http.NoBody, Request: r}, nil
		}),
	}).Repository("a/b")
	_, err := c.Read(context.Background(), "v1")
	if !errors.Is(err, registry.ErrUnauthorized) || !strings.Contains(err.Error(), "plain HTTP") {
		t.Fatalf("got %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestDockerConfig(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	helper := "#!/bin/sh\nread url\nif [ \"$url\" = \"helper.example\" ]; then echo '{\"ServerURL\":\"helper.example\",\"Username\":\"hu\",\"Secret\":\"hs\"}'; exit 0; fi\nif [ \"$url\" = \"token.example\" ]; then echo '{\"Username\":\"<token>\",\"Secret\":\"idtok\"}'; exit 0; fi\necho 'credentials not found in native keychain'; exit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-fake"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	cfg := `{
	  "auths": {
	    "https://index.docker.io/v1/": {"auth": "ZHU6ZHA="},
	    "static.example": {"auth": "c3U6c3A="},
	    "id.example": {"identitytoken": "tok123"}
	  },
	  "credHelpers": {"helper.example": "fake", "token.example": "fake", "broken.example": "missing"},
	  "credsStore": "fake"
	}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	src := registry.DockerConfig("")
	for _, tc := range []struct {
		host    string
		want    registry.Credential
		wantErr bool
	}{
		{"registry-1.docker.io", registry.Credential{Username: "du", Password: "dp"}, false},
		{"static.example", registry.Credential{Username: "su", Password: "sp"}, false},
		{"id.example", registry.Credential{IdentityToken: "tok123"}, false},
		{"helper.example", registry.Credential{Username: "hu", Password: "hs"}, false},
		{"token.example", registry.Credential{IdentityToken: "idtok"}, false},
		{"unknown.example", registry.Credential{}, false},
		{"broken.example", registry.Credential{}, true},
	} {
		t.Run(tc.host, func(t *testing.T) {
			got, err := src.Credential(context.Background(), tc.host)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err: %v", err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRealmOnInternalAddressRefused(t *testing.T) {
	for _, realm := range []string{"https://169.254.169.254/token", "https://10.0.0.1/token", "https://127.0.0.1:9/token", "https://[::1]/token"} {
		var asked atomic.Int64
		c := (&registry.Registry{Host: "registry.example", GetBackOff: fastBackOff,
			Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				asked.Add(1)
				if r.URL.Host != "registry.example" {
					t.Errorf("request sent to the realm %s", r.URL)
				}
				h := http.Header{}
				h.Set("WWW-Authenticate", `Bearer realm="`+realm+`",service="x"`)
				return &http.Response{StatusCode: 401, Header: h, Body: http.NoBody, Request: r}, nil
			}),
		}).Repository("a/b")
		_, err := c.Read(context.Background(), "v1")
		if !errors.Is(err, registry.ErrProtocol) {
			t.Errorf("realm %s: got %v, want ErrProtocol", realm, err)
		}
	}
}

// TestIdentityTokenFallsBackToGET: a realm that refuses the OAuth2 POST
// (405) gets the plain GET token request instead.
func TestIdentityTokenFallsBackToGET(t *testing.T) {
	_, inj, client := authFixture(t, defaultAuth())
	inj.Add(faults.Rule{Method: http.MethodPost, Path: "/token", Fault: faults.Status(http.StatusMethodNotAllowed, "")})
	c := client("pub/img")
	c.Registry().Credentials = registry.IdentityToken("refresh-alice")
	if err := pullAll(t, c); err != nil {
		t.Fatal(err)
	}
	if post, all := inj.RequestsTo("POST /token"), inj.RequestsTo("/token"); post != 1 || all != 2 {
		t.Errorf("token requests: %d POST of %d, want 1 of 2", post, all)
	}
}

// TestServerGrantsPullOfWiderScope: a token asked for pull,push (as docker
// asks) works for pulls on the read-only server.
func TestServerGrantsPullOfWiderScope(t *testing.T) {
	_, _, client := authFixture(t, defaultAuth())
	c := client("pub/img")
	base := "http://" + c.Registry().Host
	resp, err := http.Get(base + "/token?service=ocipull-registry&scope=repository:pub/img:pull,push")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/pub/img/manifests/v1", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d with a pull,push token", resp.StatusCode)
	}
}

// TestCatalogTokenAfterRepositoryPull: once the challenge is known, a
// request for another scope fetches a token for that scope at once, not one
// for the scope of the earlier challenge.
func TestCatalogTokenAfterRepositoryPull(t *testing.T) {
	auth := defaultAuth()
	auth.Users["alice"] = registry.ServerUser{Password: "s3cret", Repositories: []string{"*"}}
	_, inj, client := authFixture(t, auth)
	c := client("priv/img")
	c.Registry().Credentials = registry.StaticCredentials("alice", "s3cret")
	if _, err := c.Read(context.Background(), "v1"); err != nil {
		t.Fatal(err)
	}
	inj.Reset()
	repos, err := c.Registry().Repositories(context.Background())
	if err != nil || len(repos) != 3 {
		t.Fatalf("catalog: %v %v", repos, err)
	}
	if n, tok := inj.Requests(), inj.RequestsTo("/token"); n != 2 || tok != 1 {
		t.Errorf("catalog after a pull: %d requests (%d token), want 2 (1 token, no refused request)", n, tok)
	}
}

// ServerAuth.Verify replaces the password check (a password file's hook);
// Users still say what each may pull.
func TestServerAuthVerifyHook(t *testing.T) {
	auth := &registry.ServerAuth{
		Users:  map[string]registry.ServerUser{"alice": {Repositories: []string{"pub/img"}}},
		Verify: func(user, password string) bool { return user == "alice" && password == "from-the-file" },
	}
	_, _, clientFor := authFixture(t, auth)
	ok := clientFor("pub/img")
	ok.Registry().Credentials = registry.StaticCredentials("alice", "from-the-file")
	if _, err := ok.Read(context.Background(), "v1"); err != nil {
		t.Errorf("the hook's password: %v", err)
	}
	bad := clientFor("pub/img")
	bad.Registry().Credentials = registry.StaticCredentials("alice", "wrong")
	if _, err := bad.Read(context.Background(), "v1"); !errors.Is(err, registry.ErrUnauthorized) {
		t.Errorf("a wrong password: %v, want ErrUnauthorized", err)
	}
	other := clientFor("priv/img")
	other.Registry().Credentials = registry.StaticCredentials("alice", "from-the-file")
	if _, err := other.Read(context.Background(), "v1"); !errors.Is(err, registry.ErrDenied) {
		t.Errorf("a repository alice may not pull: %v, want ErrDenied", err)
	}
}
