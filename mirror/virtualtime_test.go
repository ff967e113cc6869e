package mirror_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/mirror"
	"github.com/ocipull/registry/oci"
)

// handlerTransport is an in-memory RoundTripper: each request is served by
// h to completion, without a network, so that a test can run in a
// synctest bubble and its clocks in virtual time.
type handlerTransport struct {
	h    http.Handler
	mu   sync.Mutex
	seen map[string]int // method + path → count
}

func (t *handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.mu.Lock()
	if t.seen == nil {
		t.seen = map[string]int{}
	}
	t.seen[r.Method+" "+r.URL.Path]++
	t.mu.Unlock()
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

func (t *handlerTransport) count(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seen[key]
}

// cacheGet serves one request through c in memory.
func cacheGet(c http.Handler, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec
}

// TestTagTTLInVirtualTime: a tag is served from the store for TagTTL,
// then revalidated with one HEAD; in virtual time, exactly.
func TestTagTTLInVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := oci.NewMemory()
		img := newImage(t, mem, 1000)
		srv := registry.NewServer()
		mustAdd(t, srv, "team/app", "v1", img)
		up := &handlerTransport{h: srv}
		c, err := mirror.Open(t.TempDir(), mirror.Config{TagTTL: 5 * time.Minute,
			Upstreams: map[string]mirror.Upstream{"": {URL: "http://upstream.example", Transport: up}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		head := "HEAD /v2/team/app/manifests/v1"
		if rec := cacheGet(c, "/v2/team/app/manifests/v1"); rec.Code != 200 || up.count(head) != 1 {
			t.Fatalf("first: %d, %d HEADs", rec.Code, up.count(head))
		}
		time.Sleep(5*time.Minute - time.Second)
		if rec := cacheGet(c, "/v2/team/app/manifests/v1"); rec.Code != 200 || up.count(head) != 1 {
			t.Fatalf("within the TTL: %d, %d HEADs, want 1", rec.Code, up.count(head))
		}
		time.Sleep(2 * time.Second)
		if rec := cacheGet(c, "/v2/team/app/manifests/v1"); rec.Code != 200 || up.count(head) != 2 {
			t.Fatalf("after the TTL: %d, %d HEADs, want 2", rec.Code, up.count(head))
		}
		if n := up.count("GET /v2/team/app/manifests/" + string(img.Digest())); n != 1 {
			t.Errorf("%d manifest GETs by digest, want 1 (the digest did not change)", n)
		}
	})
}

// TestUpstreamTagSettingsInVirtualTime: an upstream's own TagTTL
// replaces the cache's, and a tag its ImmutableTags match is never
// revalidated once stored, while another tag of it is.
func TestUpstreamTagSettingsInVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := oci.NewMemory()
		img := newImage(t, mem, 1000)
		srv := registry.NewServer()
		mustAdd(t, srv, "team/app", "v1.2", img)
		mustAdd(t, srv, "team/app", "latest", img)
		up := &handlerTransport{h: srv}
		c, err := mirror.Open(t.TempDir(), mirror.Config{TagTTL: time.Hour,
			Upstreams: map[string]mirror.Upstream{"": {URL: "http://upstream.example", Transport: up,
				TagTTL: time.Minute, ImmutableTags: []string{"v*"}}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, tag := range []string{"v1.2", "latest"} {
			if rec := cacheGet(c, "/v2/team/app/manifests/"+tag); rec.Code != 200 {
				t.Fatalf("%s: %d", tag, rec.Code)
			}
		}
		time.Sleep(2 * time.Minute) // past the upstream's TTL, within the cache's
		for _, tag := range []string{"v1.2", "latest"} {
			if rec := cacheGet(c, "/v2/team/app/manifests/"+tag); rec.Code != 200 {
				t.Fatalf("%s: %d", tag, rec.Code)
			}
		}
		if n := up.count("HEAD /v2/team/app/manifests/latest"); n != 2 {
			t.Errorf("latest: %d HEADs, want 2 (revalidated after the upstream's 1 minute)", n)
		}
		if n := up.count("HEAD /v2/team/app/manifests/v1.2"); n != 1 {
			t.Errorf("v1.2: %d HEADs, want 1 (immutable: never revalidated)", n)
		}
	})
	if _, err := mirror.New(nil, mirror.Config{Upstreams: map[string]mirror.Upstream{"": {URL: "http://u.example", ImmutableTags: []string{"v["}}}}); err == nil || !strings.Contains(err.Error(), "immutable tag pattern") {
		t.Error("a malformed immutable tag pattern was accepted")
	}
}

// TestTokenExpiryInVirtualTime: a client's token from the cache's
// /token endpoint opens its repository until TokenLifetime has passed,
// then gets 401 with a fresh challenge; in virtual time, exactly.
func TestTokenExpiryInVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := oci.NewMemory()
		img := newImage(t, mem, 1000)
		srv := registry.NewServer()
		mustAdd(t, srv, "team/app", "v1", img)
		auth := &registry.ServerAuth{Service: "ocipull-mirror", TokenLifetime: 10 * time.Minute,
			Verify: func(user, password string) bool { return user == "alice" && password == "a-pw" },
			Users:  map[string]registry.ServerUser{"*": {Repositories: []string{"*"}}}}
		c, err := mirror.Open(t.TempDir(), mirror.Config{Auth: auth,
			Upstreams: map[string]mirror.Upstream{"": {URL: "http://upstream.example", Transport: &handlerTransport{h: srv}}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req := httptest.NewRequest("GET", auth.TokenPath()+"?service=ocipull-mirror&scope=repository:upstream.example/team/app:pull", nil)
		req.SetBasicAuth("alice", "a-pw")
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, req)
		var tok struct {
			Token string `json:"token"`
		}
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &tok) != nil || tok.Token == "" {
			t.Fatalf("token: %d %s", rec.Code, rec.Body)
		}
		get := func() int {
			req := httptest.NewRequest("GET", "/v2/team/app/manifests/v1", nil)
			req.Header.Set("Authorization", "Bearer "+tok.Token)
			rec := httptest.NewRecorder()
			c.ServeHTTP(rec, req)
			return rec.Code
		}
		if code := get(); code != 200 {
			t.Fatalf("with a fresh token: %d", code)
		}
		time.Sleep(10*time.Minute - time.Second)
		if code := get(); code != 200 {
			t.Fatalf("a second before expiry: %d", code)
		}
		time.Sleep(2 * time.Second)
		if code := get(); code != http.StatusUnauthorized {
			t.Errorf("after expiry: %d, want 401", code)
		}
	})
}

// TestBreakerInVirtualTime: an upstream answering 503 is marked down for
// DownFor, then twice that after the next failure; meanwhile requests
// are answered at once with no upstream request.
func TestBreakerInVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := registry.NewServer()
		inj := &faults.Injector{Next: srv}
		inj.Add(faults.Rule{Fault: faults.Status(503, "")})
		up := &handlerTransport{h: inj}
		c, err := mirror.Open(t.TempDir(), mirror.Config{
			Upstreams: map[string]mirror.Upstream{"": {URL: "http://upstream.example", Transport: up, DownFor: 10 * time.Second}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		asked := func() int {
			up.mu.Lock()
			defer up.mu.Unlock()
			n := 0
			for _, v := range up.seen {
				n += v
			}
			return n
		}
		get := func() int { return cacheGet(c, "/v2/team/app/manifests/v1").Code }
		if code := get(); code != http.StatusServiceUnavailable {
			t.Fatalf("first: %d", code)
		}
		n := asked()
		step := func(wait time.Duration, wantAsked bool) {
			t.Helper()
			time.Sleep(wait)
			before := asked()
			if code := get(); code != http.StatusServiceUnavailable {
				t.Fatalf("after %v: %d", wait, code)
			}
			if got := asked() > before; got != wantAsked {
				t.Fatalf("after %v: upstream asked %v, want %v", wait, got, wantAsked)
			}
		}
		step(9*time.Second, false) // down for 10 s
		step(2*time.Second, true)  // 11 s: asked again, fails: down for 20 s
		step(19*time.Second, false)
		step(2*time.Second, true)
		if n == 0 {
			t.Fatal("the upstream was never asked")
		}
	})
}

// TestListTTLInVirtualTime: a tag list is reused for ListTTL.
func TestListTTLInVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := oci.NewMemory()
		srv := registry.NewServer()
		mustAdd(t, srv, "team/app", "v1", newImage(t, mem, 10))
		up := &handlerTransport{h: srv}
		c, err := mirror.Open(t.TempDir(), mirror.Config{ListTTL: 30 * time.Second,
			Upstreams: map[string]mirror.Upstream{"": {URL: "http://upstream.example", Transport: up}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		list := "GET /v2/team/app/tags/list"
		for i, wait := range []time.Duration{0, 29 * time.Second, 2 * time.Second} {
			time.Sleep(wait)
			if rec := cacheGet(c, "/v2/team/app/tags/list"); rec.Code != 200 {
				t.Fatalf("request %d: %d", i, rec.Code)
			}
		}
		if n := up.count(list); n != 2 {
			t.Errorf("%d upstream tag lists, want 2 (one at 0 s, one after 31 s)", n)
		}
	})
}

// TestReadinessInVirtualTime: /healthz always answers; /readyz flips to
// 503 naming the upstream while it is marked down, and back to 200 once a
// request finds it up again.
func TestReadinessInVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := registry.NewServer()
		mustAdd(t, srv, "team/app", "v1", newImage(t, oci.NewMemory(), 10))
		var broken atomic.Bool
		up := &handlerTransport{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if broken.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			srv.ServeHTTP(w, r)
		})}
		c, err := mirror.Open(t.TempDir(), mirror.Config{
			Upstreams: map[string]mirror.Upstream{"": {URL: "http://upstream.example", Transport: up, DownFor: 10 * time.Second}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if rec := cacheGet(c, "/healthz"); rec.Code != 200 {
			t.Fatalf("healthz: %d", rec.Code)
		}
		if rec := cacheGet(c, "/readyz"); rec.Code != 200 {
			t.Fatalf("readyz at start: %d %s", rec.Code, rec.Body)
		}
		broken.Store(true)
		cacheGet(c, "/v2/team/app/manifests/v1")
		rec := cacheGet(c, "/readyz")
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "upstream.example: down") {
			t.Fatalf("readyz with the upstream down: %d %q", rec.Code, rec.Body)
		}
		if rec := cacheGet(c, "/healthz"); rec.Code != 200 {
			t.Fatalf("healthz with the upstream down: %d", rec.Code)
		}
		broken.Store(false)
		time.Sleep(11 * time.Second)
		cacheGet(c, "/v2/team/app/manifests/v1")
		if rec := cacheGet(c, "/readyz"); rec.Code != 200 {
			t.Fatalf("readyz restored: %d %s", rec.Code, rec.Body)
		}
	})
}
