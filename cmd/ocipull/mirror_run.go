package main

import (
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/mirror"
)

// mirrorGeneration is one configuration of a running `ocipull mirror`:
// its cache, users and log. A reload starts the next generation on the
// same store and retires this one once the requests it serves are done.
type mirrorGeneration struct {
	cache  *mirror.Cache
	admin  http.Handler
	logger *slog.Logger

	mu      sync.Mutex
	active  int           // requests being served
	retired bool          // no new requests
	idle    chan struct{} // closed when retired and idle
}

// startMirrorGeneration opens the store with the settings s, counting
// into metrics (shared by every generation).
func startMirrorGeneration(s *mirrorSettings, log io.Writer, verbose bool, metrics *mirror.Metrics) (*mirrorGeneration, error) {
	logger, err := mirrorLogger(log, s.logFormat, s.quiet, verbose)
	if err != nil {
		return nil, err
	}
	cfg, err := s.cacheConfig()
	if err != nil {
		return nil, err
	}
	cfg.Log = logger
	cfg.Metrics = metrics
	var users *htpasswd
	if s.htpasswd != "" {
		users, err = loadHtpasswd(s.htpasswd, func(msg string) { logger.Warn(msg) })
		if err != nil {
			return nil, usageErr("htpasswd: %v", err)
		}
		auth := &registry.ServerAuth{Service: "ocipull-mirror", Verify: users.verify, TokenLifetime: s.tokenLifetime,
			Users: map[string]registry.ServerUser{"*": {Repositories: []string{"*"}}}}
		for user, repos := range s.grants {
			auth.Users[user] = registry.ServerUser{Repositories: repos}
		}
		if len(s.anonymous) > 0 {
			auth.Anonymous = s.anonymous
		}
		cfg.Auth = auth
	}
	m, err := mirror.Open(s.store, cfg)
	if err != nil {
		return nil, err
	}
	for ns, up := range s.upstreams {
		logger.Debug("upstream", "ns", nsName(ns), "url", safe(up.url), "credentials", up.credentialsNote)
	}
	admin := http.NewServeMux()
	admin.Handle("/admin/v1/", adminAPI(m, users, s.admins))
	admin.Handle("/", m.Admin())
	return &mirrorGeneration{cache: m, admin: admin, logger: logger, idle: make(chan struct{})}, nil
}

// acquire counts a request in, unless the generation is retired.
func (g *mirrorGeneration) acquire() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.retired {
		return false
	}
	g.active++
	return true
}

func (g *mirrorGeneration) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.active--; g.active == 0 && g.retired {
		close(g.idle)
	}
}

// retire waits for the requests in progress to end, then closes the
// cache (fetches nobody follows any more are cancelled; their landings
// stay, to be resumed by the next generation).
func (g *mirrorGeneration) retire() {
	g.mu.Lock()
	g.retired = true
	if g.active == 0 {
		close(g.idle)
	}
	g.mu.Unlock()
	<-g.idle
	g.cache.Close()
}

// mirrorFront serves each request with the current generation.
type mirrorFront struct {
	cur atomic.Pointer[mirrorGeneration]
}

func (f *mirrorFront) serve(w http.ResponseWriter, r *http.Request, h func(*mirrorGeneration) http.Handler) {
	for {
		g := f.cur.Load()
		if g.acquire() {
			defer g.release()
			h(g).ServeHTTP(w, r)
			return
		}
		// Retired between the load and the acquire: the next one is
		// already current.
	}
}

func (f *mirrorFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.serve(w, r, func(g *mirrorGeneration) http.Handler { return g.cache })
}

// admin is the admin listener's handler: the current generation's.
func (f *mirrorFront) admin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.serve(w, r, func(g *mirrorGeneration) http.Handler { return g.admin })
	})
}
