package mirror

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/ocipull/registry/internal/wire"
)

// ServeHTTP implements http.Handler: the pull and discovery API (GET and
// HEAD of /v2/, manifests, blobs, tags and referrers), the token endpoint
// when Auth is set, and /metrics. Every request is logged once, with its
// outcome and the cause of any failure.
func (c *Cache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := wire.NewRecorder(w)
	var o outcome
	var t target
	defer func() {
		p := recover()
		switch {
		case p == http.ErrAbortHandler:
			o.kind = outAborted
			c.stats.aborted.Add(1)
		case p != nil:
			c.stats.panics.Add(1)
			c.log.Error("panic while serving", "method", r.Method, "path", safe(r.URL.Path),
				"panic", safe(fmt.Sprint(p)), "stack", string(debug.Stack()))
			o = outcome{outAborted, fmt.Errorf("internal error")}
			c.stats.aborted.Add(1)
		}
		c.logRequest(r, rec, t, o, time.Since(start))
		if p != nil {
			// Cut the connection: whatever was written is not a whole
			// answer.
			panic(http.ErrAbortHandler)
		}
	}()
	o, t = c.serve(rec, r)
}

func (c *Cache) logRequest(r *http.Request, rec *wire.Recorder, t target, o outcome, d time.Duration) {
	c.stats.answered(rec.Status, d)
	attrs := []any{"method", r.Method, "path", safe(r.URL.RequestURI()), "status", rec.Status, "bytes", rec.Bytes,
		"duration", d.Round(time.Millisecond), "client", clientAddr(r), "outcome", string(o.kind)}
	if rec.User != "" {
		attrs = append(attrs, "user", safe(rec.User))
	}
	if t.up != nil {
		attrs = append(attrs, "upstream", t.up.name)
	}
	if o.cause != nil {
		attrs = append(attrs, "cause", safe(o.cause.Error()))
	}
	c.log.Info("request", attrs...)
}

// clientAddr is the client's IP address (the per-client fetch cap's key).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (c *Cache) serve(w *wire.Recorder, r *http.Request) (outcome, target) {
	auth := c.cfg.Auth
	switch {
	case r.URL.Path == "/metrics" && !c.cfg.MetricsOnAdminOnly:
		c.serveMetrics(w)
		return outcome{kind: outHit}, target{}
	case r.URL.Path == "/healthz":
		// Liveness: the process answers.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
		return outcome{kind: outHit}, target{}
	case r.URL.Path == "/readyz":
		return c.serveReady(w), target{}
	case auth != nil && r.URL.Path == auth.TokenPath():
		auth.ServeToken(w, r)
		return outcome{kind: outPassed}, target{}
	}
	rt, ok := wire.Preamble(w, r)
	if !ok {
		return outcome{kind: outRefused}, target{}
	}
	switch rt.Kind {
	case wire.Root:
		if auth.Authorize(w, r, "") {
			wire.WriteEmptyJSON(w, r)
			return outcome{kind: outHit}, target{}
		}
		return outcome{kind: outRefused}, target{}
	case wire.Catalog:
		wire.WriteError(w, http.StatusNotFound, wire.CodeUnsupported, "the catalog is not served by this cache")
		return outcome{kind: outRefused}, target{}
	}
	t, err := c.route(r.URL.Query().Get("ns"), rt.Name)
	if err != nil {
		// Authenticate first, so that an anonymous caller learns nothing
		// of the configuration.
		if !auth.Authorize(w, r, "") {
			return outcome{kind: outRefused}, target{}
		}
		if err == errNoUpstream {
			wire.WriteError(w, http.StatusNotFound, wire.CodeNameUnknown, "no such upstream is configured")
		} else {
			wire.WriteError(w, http.StatusBadRequest, wire.CodeNameInvalid, "invalid repository name")
		}
		return outcome{outRefused, err}, target{}
	}
	if !auth.Authorize(w, r, t.scope()) {
		return outcome{kind: outRefused}, t
	}
	switch rt.Kind {
	case wire.Manifests:
		return c.serveManifest(w, r, t, rt.Reference), t
	case wire.Blobs:
		return c.serveBlob(w, r, t, rt.Reference), t
	case wire.Tags:
		return c.serveTags(w, r, t), t
	default:
		return c.serveReferrers(w, r, t, rt.Reference), t
	}
}

// serveReady answers readiness: 200 when the store can be read and at
// least one upstream is not marked down; else 503 with the reasons, one a
// line (the upstream's name and the sanitised cause).
func (c *Cache) serveReady(w http.ResponseWriter) outcome {
	var problems []string
	if _, err := c.store.Index(); err != nil {
		problems = append(problems, "store: unusable")
		c.log.Warn("readiness: the store cannot be read", "cause", safe(err.Error()))
	}
	var downs []string
	for _, up := range c.upstreams {
		if down, cause := up.breaker.down(); down {
			downs = append(downs, "upstream "+up.name+": down ("+cause+")")
		}
	}
	if len(downs) == len(c.upstreams) {
		sort.Strings(downs)
		problems = append(problems, downs...)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, strings.Join(problems, "\n")+"\n")
		return outcome{kind: outFailed}
	}
	io.WriteString(w, "ready\n")
	return outcome{kind: outHit}
}

// Admin is the handler for an operator's listener: /metrics, /healthz
// and /readyz, unauthenticated (bind it where only operators reach it).
func (c *Cache) Admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) { c.serveMetrics(w) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { c.serveReady(w) })
	return mux
}
