package mirror

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"sort"
	"strconv"
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
	id := c.requestID(r)
	w.Header().Set("X-Request-Id", id)
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
		c.logRequest(r, id, rec, t, o, time.Since(start))
		if p != nil {
			// Cut the connection: whatever was written is not a whole
			// answer.
			panic(http.ErrAbortHandler)
		}
	}()
	o = c.serve(rec, r, &t)
}

// logRequest writes the request's record: request id, client address,
// user ("" when anonymous), method, path, status, bytes, duration,
// outcome, upstream ("" when none was involved) and, for a failure, its
// cause.
func (c *Cache) logRequest(r *http.Request, id string, rec *wire.Recorder, t target, o outcome, d time.Duration) {
	c.stats.answered(rec.Status, d)
	upstream := ""
	if t.up != nil {
		upstream = t.up.name
	}
	attrs := []any{"request_id", id, "client", clientAddr(r), "user", safe(rec.User), "method", r.Method,
		"path", safe(r.URL.RequestURI()), "status", rec.Status, "bytes", rec.Bytes,
		"duration", d.Round(time.Millisecond), "outcome", string(o.kind), "upstream", upstream}
	if o.cause != nil {
		attrs = append(attrs, "cause", safe(o.cause.Error()))
	}
	c.log.Info("request", attrs...)
}

// requestID is the request's id for the log and the X-Request-Id
// response header: the client's (a load balancer's) X-Request-Id when it
// is a plain token of at most 64 characters, else the cache's own (a
// random per-cache prefix and a sequence number).
func (c *Cache) requestID(r *http.Request) string {
	if v := r.Header.Get("X-Request-Id"); v != "" && len(v) <= 64 && plainToken(v) {
		return v
	}
	return c.idPrefix + "-" + strconv.FormatUint(c.idSeq.Add(1), 10)
}

func plainToken(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.') {
			return false
		}
	}
	return true
}

// clientAddr is the client's IP address (the per-client fetch cap's key).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// serve answers r; it sets *routed to the request's upstream target as
// soon as it is known, so that the log names it even when the answer is
// cut (a panic with http.ErrAbortHandler).
func (c *Cache) serve(w *wire.Recorder, r *http.Request, routed *target) outcome {
	auth := c.cfg.Auth
	switch {
	case r.URL.Path == "/metrics" && !c.cfg.MetricsOnAdminOnly:
		c.serveMetrics(w)
		return outcome{kind: outHit}
	case r.URL.Path == "/healthz":
		// Liveness: the process answers.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
		return outcome{kind: outHit}
	case r.URL.Path == "/readyz":
		return c.serveReady(w)
	case auth != nil && r.URL.Path == auth.TokenPath():
		auth.ServeToken(w, r)
		return outcome{kind: outPassed}
	}
	rt, ok := wire.Preamble(w, r)
	if !ok {
		return outcome{kind: outRefused}
	}
	switch rt.Kind {
	case wire.Root:
		if auth.Authorize(w, r, "") {
			wire.WriteEmptyJSON(w, r)
			return outcome{kind: outHit}
		}
		return outcome{kind: outRefused}
	case wire.Catalog:
		wire.WriteError(w, http.StatusNotFound, wire.CodeUnsupported, "the catalog is not served by this cache")
		return outcome{kind: outRefused}
	}
	t, err := c.route(r.URL.Query().Get("ns"), rt.Name)
	if err != nil {
		// Authenticate first, so that an anonymous caller learns nothing
		// of the configuration.
		if !auth.Authorize(w, r, "") {
			return outcome{kind: outRefused}
		}
		if err == errNoUpstream {
			wire.WriteError(w, http.StatusNotFound, wire.CodeNameUnknown, "no such upstream is configured")
		} else {
			wire.WriteError(w, http.StatusBadRequest, wire.CodeNameInvalid, "invalid repository name")
		}
		return outcome{outRefused, err}
	}
	*routed = t
	if !auth.Authorize(w, r, t.scope()) {
		return outcome{kind: outRefused}
	}
	switch rt.Kind {
	case wire.Manifests:
		return c.serveManifest(w, r, t, rt.Reference)
	case wire.Blobs:
		return c.serveBlob(w, r, t, rt.Reference)
	case wire.Tags:
		return c.serveTags(w, r, t)
	default:
		return c.serveReferrers(w, r, t, rt.Reference)
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
