package registry_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
)

// headerLog records the header of every request an endpoint receives.
type headerLog struct {
	mu   sync.Mutex
	reqs []http.Header
}

func (l *headerLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.add(r)
		next.ServeHTTP(w, r)
	})
}

func (l *headerLog) add(r *http.Request) {
	l.mu.Lock()
	l.reqs = append(l.reqs, r.Header.Clone())
	l.mu.Unlock()
}

func (l *headerLog) all() []http.Header {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]http.Header(nil), l.reqs...)
}

// hosts.toml headers go to the host they are configured for and nowhere
// else; the client's own Accept is not replaced; dial_timeout is read.
func TestHostsTOMLHeadersGoOnlyToTheirHost(t *testing.T) {
	regLog, mirLog := &headerLog{}, &headerLog{}
	ms := newMirrorSetup(t, mirLog.wrap)
	ms.registry.Config.Handler = regLog.wrap(ms.registry.Config.Handler)
	layers := ms.img.Layers()
	ms.mirrorFaults.Add(faults.Rule{Path: "/blobs/" + string(layers[0].Digest), Fault: faults.Status(http.StatusNotFound, "")})
	root := t.TempDir()
	writeFile(t, filepath.Join(root, strings.Replace(ms.regHost, ":", "_", 1)+"_", "hosts.toml"), []byte(`
server = "http://`+ms.regHost+`"
dial_timeout = "7s"

[header]
  X-Registry-Key = "r1"

[host."http://`+ms.mirrorHost+`"]
  dial_timeout = "2s"
  [host."http://`+ms.mirrorHost+`".header]
    x-mirror-key = ["m1", "m2"]
    accept = "text/plain"
`))
	c := ms.client()
	if err := c.Registry().LoadHostsDir(root); err != nil {
		t.Fatal(err)
	}
	if len(c.Registry().Mirrors) != 1 || c.Registry().Mirrors[0].DialTimeout != 2*time.Second || c.Registry().DialTimeout != 7*time.Second || c.Registry().MirrorsOnly {
		t.Fatalf("mirrors %+v, registry dial timeout %v, MirrorsOnly %v", c.Registry().Mirrors, c.Registry().DialTimeout, c.Registry().MirrorsOnly)
	}
	if _, err := pullVerified(t, c, "v1"); err != nil {
		t.Fatal(err)
	}
	mirReqs, regReqs := mirLog.all(), regLog.all()
	if len(mirReqs) != 6 || len(regReqs) != 1 {
		t.Fatalf("mirror saw %d requests, registry %d; want 6 and 1 (the blob the mirror lacks)", len(mirReqs), len(regReqs))
	}
	manifests := 0
	for _, h := range mirReqs {
		if got := h.Values("X-Mirror-Key"); len(got) != 2 || got[0] != "m1" || got[1] != "m2" {
			t.Errorf("mirror request X-Mirror-Key %q, want [m1 m2]", got)
		}
		if h.Get("X-Registry-Key") != "" {
			t.Error("the registry's header reached the mirror")
		}
		if strings.Contains(h.Get("Accept"), "manifest") {
			manifests++
		}
	}
	if manifests != 1 {
		t.Errorf("%d mirror requests kept the client's manifest Accept, want 1 (the configured accept must not replace it)", manifests)
	}
	if h := regReqs[0]; h.Get("X-Registry-Key") != "r1" || h.Get("X-Mirror-Key") != "" {
		t.Errorf("registry request header %v, want X-Registry-Key r1 and no mirror key", h)
	}
}

// Registry.Header is not sent to a redirect target on another origin.
func TestClientHeaderStaysOnTheRegistry(t *testing.T) {
	cdnLog := &headerLog{}
	ms := newMirrorSetup(t, nil)
	cdn := serve(t, cdnLog.wrap(ms.registrySrv))
	ms.registry.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			if r.Header.Get("X-Api-Key") != "k" {
				t.Errorf("registry blob request without X-Api-Key")
			}
			http.Redirect(w, r, cdn.URL+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		ms.registrySrv.ServeHTTP(w, r)
	})
	c := ms.client()
	c.Registry().Header = http.Header{"X-Api-Key": {"k"}}
	if _, err := pullVerified(t, c, "v1"); err != nil {
		t.Fatal(err)
	}
	reqs := cdnLog.all()
	if len(reqs) != 5 {
		t.Fatalf("redirect target saw %d requests, want 5 (config and 4 layers)", len(reqs))
	}
	for _, h := range reqs {
		if h.Get("X-Api-Key") != "" {
			t.Error("Registry.Header reached the redirect target")
		}
	}
}

// Header fields that could split a request, and dial settings a caller's
// Transport would silently drop, are refused before anything is sent.
func TestEndpointSettingsValidated(t *testing.T) {
	ms := newMirrorSetup(t, nil)
	for name, mut := range map[string]func(c *registry.Client){
		"header value with CRLF":  func(c *registry.Client) { c.Registry().Header = http.Header{"X-A": {"a\r\nHost: evil"}} },
		"header name not a token": func(c *registry.Client) { c.Registry().Header = http.Header{"X A": {"a"}} },
		"mirror header with NUL": func(c *registry.Client) {
			c.Registry().Mirrors = []registry.Endpoint{{Scheme: "http", Host: ms.mirrorHost, Header: http.Header{"X-A": {"a\x00"}}}}
		},
	} {
		c := ms.client()
		mut(c)
		if _, err := c.Read(context.Background(), "v1"); !errors.Is(err, registry.ErrInvalidReference) {
			t.Errorf("%s: got %v, want ErrInvalidReference", name, err)
		}
	}
	c := ms.client()
	c.Registry().Transport, c.Registry().DialTimeout = http.DefaultTransport, time.Second
	if _, err := c.Read(context.Background(), "v1"); err == nil || !strings.Contains(err.Error(), "DialTimeout") {
		t.Errorf("DialTimeout with Transport: got %v, want an error naming DialTimeout", err)
	}
	if n := len(ms.regSeen.all()) + len(ms.mirSeen.all()); n != 0 {
		t.Errorf("%d requests were sent with invalid settings", n)
	}
	root := t.TempDir()
	for _, bad := range []string{`dial_timeout = "soon"`, `dial_timeout = "-1s"`, `dial_timeout = 5`, `header = "x"`, "[header]\n\"X A\" = \"v\"", "[header]\nX-A = 1"} {
		writeFile(t, filepath.Join(root, ms.regHost, "hosts.toml"), []byte(bad+"\n"))
		if err := ms.client().Registry().LoadHostsDir(root); !errors.Is(err, registry.ErrInvalidConfig) {
			t.Errorf("%q: got %v, want ErrInvalidConfig", bad, err)
		}
	}
}

// A realm on the registry's own origin gets Registry.Header with the token
// request (a gateway in front of the whole host needs it there too); a
// realm on another origin does not.
func TestClientHeaderAndTokenRealms(t *testing.T) {
	for _, realmElsewhere := range []bool{false, true} {
		ms := newMirrorSetup(t, nil)
		ms.registrySrv.Auth = &registry.ServerAuth{Anonymous: []string{"*"}}
		realmLog := &headerLog{}
		realm := serve(t, realmLog.wrap(ms.registrySrv)) // the same token service, another origin
		ms.registry.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Gate") != "open" {
				http.Error(w, "the gateway wants X-Gate", http.StatusForbidden)
				return
			}
			if strings.HasPrefix(r.URL.Path, "/token") {
				realmLog.add(r)
			}
			if realmElsewhere {
				w = realmRewriter{w, "http://" + ms.regHost, realm.URL}
			}
			ms.registrySrv.ServeHTTP(w, r)
		})
		c := ms.client()
		c.Registry().Header = http.Header{"X-Gate": {"open"}}
		if _, err := pullVerified(t, c, "v1"); err != nil {
			t.Fatalf("realm elsewhere %v: %v", realmElsewhere, err)
		}
		tokens := realmLog.all()
		if len(tokens) == 0 {
			t.Fatalf("realm elsewhere %v: no token request", realmElsewhere)
		}
		for _, h := range tokens {
			if got := h.Get("X-Gate"); (got == "open") == realmElsewhere {
				t.Errorf("realm elsewhere %v: token request X-Gate %q", realmElsewhere, got)
			}
		}
	}
}

// realmRewriter moves a challenge's realm from one origin to another.
type realmRewriter struct {
	http.ResponseWriter
	from, to string
}

func (rw realmRewriter) WriteHeader(code int) {
	if v := rw.Header().Get("Www-Authenticate"); v != "" {
		rw.Header().Set("Www-Authenticate", strings.Replace(v, rw.from, rw.to, 1))
	}
	rw.ResponseWriter.WriteHeader(code)
}
