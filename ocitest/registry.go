package ocitest

import (
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// Registry is a [registry.Server] serving over loopback HTTP for the
// length of a test, recording every request.
type Registry struct {
	*Recorder
	// Server is the registry: add, retag and remove content while it serves.
	Server *registry.Server
	// HTTP is the listener; Host is its host:port.
	HTTP *httptest.Server
	Host string
}

// TB is the part of testing.TB that NewRegistry uses (so that this
// package does not import testing into the programs that build content
// with it).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// NewRegistry starts a server with auth (nil for none) holding refs, keyed
// "repository:tag" (or "repository" for by-digest only), and closes it when
// the test ends. It fails the test at once when content cannot be added,
// naming what is missing.
func NewRegistry(t TB, auth *registry.ServerAuth, refs map[string]oci.Ref) *Registry {
	t.Helper()
	srv := registry.NewServer()
	srv.Auth = auth
	for name, ref := range refs {
		repo, tag, _ := strings.Cut(name, ":")
		if err := srv.AddRef(repo, tag, ref); err != nil {
			t.Fatalf("ocitest.NewRegistry: %s: %v", name, err)
		}
	}
	rec := &Recorder{}
	srv.OnRequest = rec.Record
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &Registry{Recorder: rec, Server: srv, HTTP: ts, Host: ts.Listener.Addr().String()}
}

// Client is a plain-HTTP client for repository on the registry, with
// credentials when user is not empty.
func (r *Registry) Client(repository string, userPassword ...string) *registry.Client {
	c := &registry.Client{Scheme: "http", Host: r.Host, Repository: repository}
	if len(userPassword) == 2 {
		c.Credentials = registry.StaticCredentials(userPassword[0], userPassword[1])
	}
	return c
}

// Recorder collects what a server answered ([registry.Server.OnRequest]).
// It is safe for concurrent use.
type Recorder struct {
	mu   sync.Mutex
	reqs []registry.RecordedRequest
}

// Record appends one request; set it as a server's OnRequest.
func (r *Recorder) Record(req registry.RecordedRequest) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
}

// Requests returns a copy of what was recorded, in order.
func (r *Recorder) Requests() []registry.RecordedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]registry.RecordedRequest(nil), r.reqs...)
}

// Count is how many recorded requests had method (any when empty) and a
// path containing substr.
func (r *Recorder) Count(method, substr string) int {
	n := 0
	for _, q := range r.Requests() {
		if (method == "" || q.Method == method) && strings.Contains(q.Path, substr) {
			n++
		}
	}
	return n
}

// Reset forgets what was recorded.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.reqs = nil
	r.mu.Unlock()
}
