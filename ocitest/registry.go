package ocitest

import (
	"fmt"
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

// Connect returns a new plain-HTTP [registry.Registry] for the server:
// anonymous with no arguments, with the credentials user, password with
// two. Any other number of arguments panics (a test's mistake, never
// silently anonymous). Take repository handles from it with
// [registry.Registry.Repository]; they share its connections and tokens.
func (r *Registry) Connect(userPassword ...string) *registry.Registry {
	reg := &registry.Registry{Scheme: "http", Host: r.Host}
	switch len(userPassword) {
	case 0:
	case 2:
		reg.Credentials = registry.StaticCredentials(userPassword[0], userPassword[1])
	default:
		panic(fmt.Sprintf("ocitest: Connect wants no arguments or user, password; got %d", len(userPassword)))
	}
	return reg
}

// Client is a plain-HTTP client for repository on a new
// [registry.Registry] (see [Registry.Connect] for userPassword).
func (r *Registry) Client(repository string, userPassword ...string) *registry.Client {
	return r.Connect(userPassword...).Repository(repository)
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
