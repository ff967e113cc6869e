package mirror

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ocipull/registry"
)

// stats are the counters /metrics reports.
// Metrics are what a [Cache] counts for /metrics: requests, hits, misses,
// bytes, upstream requests and their latency. Caches given the same
// Metrics (Config.Metrics) count together, so a server that replaces its
// cache to reload its configuration keeps counting where it was; the
// process start time stays each cache's. A Metrics holds a fixed set of
// counters and one latency histogram per upstream ever configured with it
// (by its name and the ns it answers to): bounded by the configuration,
// not by requests. Safe for concurrent use.
type Metrics struct {
	s         stats
	mu        sync.Mutex
	upstreams map[[2]string]*histogram
}

// NewMetrics returns counters at zero.
func NewMetrics() *Metrics { return &Metrics{upstreams: map[[2]string]*histogram{}} }

// upstreamLatency is the latency histogram of the upstream key (its ns)
// named name, made on first use.
func (m *Metrics) upstreamLatency(key, name string) *histogram {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.upstreams[[2]string{key, name}]
	if h == nil {
		h = &histogram{}
		m.upstreams[[2]string{key, name}] = h
	}
	return h
}

type stats struct {
	hits, misses, coalesced, stale, evictions atomic.Int64
	upstreamRequests, upstreamBytes           atomic.Int64
	upstreamGets, upstreamHeads               atomic.Int64
	upstreamErrors, servedBytes               atomic.Int64
	storeBytes, aborted, panics, refused      atomic.Int64
	verifyFailures                            atomic.Int64

	// byClass counts answers by status class: index 1 for 1xx to 5 for
	// 5xx (0: anything else).
	byClass [6]atomic.Int64
	latency histogram // of every request, to its last byte
}

// answered counts one answer of status, taking d.
func (s *stats) answered(status int, d time.Duration) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	s.byClass[class].Add(1)
	s.latency.observe(d)
}

// traceUpstream counts every HTTP request sent upstream (token requests
// and resumes included) and the body bytes read, and logs it at debug
// level.
func (c *Cache) traceUpstream(up *upstream, t registry.RequestTrace) {
	s := c.stats
	up.latency.observe(t.Duration)
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		attrs := []any{"method", t.Method, "url", safe(t.URL), "status", t.Status, "bytes", t.Bytes, "duration", t.Duration.Round(time.Millisecond)}
		if t.Err != nil {
			attrs = append(attrs, "cause", safe(t.Err.Error()))
		}
		c.log.Debug("upstream request", attrs...)
	}
	s.upstreamRequests.Add(1)
	s.upstreamBytes.Add(t.Bytes)
	switch t.Method {
	case http.MethodHead:
		s.upstreamHeads.Add(1)
	case http.MethodGet:
		s.upstreamGets.Add(1)
	}
}

// serveMetrics writes the counters in the Prometheus text exposition
// format (version 0.0.4).
func (c *Cache) serveMetrics(w http.ResponseWriter) {
	s := c.stats
	var b strings.Builder
	metric := func(name, typ, help string, v int64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, help, name, typ, name, v)
	}
	metric("ocipull_mirror_hits_total", "counter", "Requests answered from the store.", s.hits.Load())
	metric("ocipull_mirror_misses_total", "counter", "Requests that started an upstream fetch.", s.misses.Load())
	metric("ocipull_mirror_coalesced_total", "counter", "Requests that joined a fetch already in flight.", s.coalesced.Load())
	metric("ocipull_mirror_stale_total", "counter", "Answers served stale because the upstream could not be asked.", s.stale.Load())
	metric("ocipull_mirror_evictions_total", "counter", "Blobs and manifests removed to stay within the size cap.", s.evictions.Load())
	metric("ocipull_mirror_upstream_requests_total", "counter", "HTTP requests sent upstream (token requests and resumes included).", s.upstreamRequests.Load())
	metric("ocipull_mirror_upstream_bytes_total", "counter", "Response body bytes read from upstreams.", s.upstreamBytes.Load())
	metric("ocipull_mirror_upstream_errors_total", "counter", "Upstream requests made for clients that failed.", s.upstreamErrors.Load())
	metric("ocipull_mirror_verify_failures_total", "counter", "Upstream content that did not match its digest or size.", s.verifyFailures.Load())
	metric("ocipull_mirror_served_bytes_total", "counter", "Blob and manifest bytes served to clients.", s.servedBytes.Load())
	metric("ocipull_mirror_aborted_total", "counter", "Responses cut before their end.", s.aborted.Load())
	metric("ocipull_mirror_refused_total", "counter", "Requests refused for a fetch cap (429 or 503).", s.refused.Load())
	metric("ocipull_mirror_panics_total", "counter", "Panics recovered while serving or fetching.", s.panics.Load())
	metric("ocipull_mirror_store_bytes", "gauge", "Bytes of content and landings in the store.", s.storeBytes.Load())
	content := c.acct.counts()
	c.flights.mu.Lock()
	fetching := len(c.flights.running)
	c.flights.mu.Unlock()
	b.WriteString("# HELP ocipull_mirror_store_items Items in the store, by kind: content (blobs and manifests stored), fetch (blobs this process is landing from upstream).\n# TYPE ocipull_mirror_store_items gauge\n")
	fmt.Fprintf(&b, "ocipull_mirror_store_items{kind=\"content\"} %d\nocipull_mirror_store_items{kind=\"fetch\"} %d\n", content, fetching)
	metric("ocipull_mirror_tags", "gauge", "Tags the cache knows (at most MaxTags).", int64(c.tags.mem.len()))
	b.WriteString("# HELP ocipull_mirror_requests_total Requests answered, by status class.\n# TYPE ocipull_mirror_requests_total counter\n")
	for class := 1; class <= 5; class++ {
		fmt.Fprintf(&b, "ocipull_mirror_requests_total{class=\"%dxx\"} %d\n", class, s.byClass[class].Load())
	}
	fmt.Fprintf(&b, "ocipull_mirror_requests_total{class=\"other\"} %d\n", s.byClass[0].Load())
	b.WriteString("# HELP ocipull_mirror_request_duration_seconds Time to answer a request, to its last byte.\n# TYPE ocipull_mirror_request_duration_seconds histogram\n")
	s.latency.write(&b, "ocipull_mirror_request_duration_seconds", "")
	b.WriteString("# HELP ocipull_mirror_upstream_request_duration_seconds Time of one upstream request, to its last byte read, by upstream (ns: the name clients use for it, empty for the default).\n# TYPE ocipull_mirror_upstream_request_duration_seconds histogram\n")
	keys := make([]string, 0, len(c.upstreams))
	for key := range c.upstreams {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		up := c.upstreams[key]
		up.latency.write(&b, "ocipull_mirror_upstream_request_duration_seconds", fmt.Sprintf("ns=%q,upstream=%q", key, up.name))
	}
	// The pull allowance each upstream last stated (Docker Hub's
	// RateLimit-Limit and RateLimit-Remaining), for upstreams that did.
	var limits, remaining strings.Builder
	for _, key := range keys {
		up := c.upstreams[key]
		rl, ok := up.reg.RateLimit()
		if !ok {
			continue
		}
		labels := fmt.Sprintf("ns=%q,upstream=%q", key, up.name)
		if rl.Limit >= 0 {
			fmt.Fprintf(&limits, "ocipull_mirror_upstream_ratelimit_limit{%s} %d\n", labels, rl.Limit)
		}
		if rl.Remaining >= 0 {
			fmt.Fprintf(&remaining, "ocipull_mirror_upstream_ratelimit_remaining{%s} %d\n", labels, rl.Remaining)
		}
	}
	b.WriteString("# HELP ocipull_mirror_upstream_ratelimit_limit Pulls the upstream's rate-limit window allows, as it last stated.\n# TYPE ocipull_mirror_upstream_ratelimit_limit gauge\n")
	b.WriteString(limits.String())
	b.WriteString("# HELP ocipull_mirror_upstream_ratelimit_remaining Pulls left in the upstream's rate-limit window, as it last stated.\n# TYPE ocipull_mirror_upstream_ratelimit_remaining gauge\n")
	b.WriteString(remaining.String())
	writeRuntimeMetrics(&b, c.started)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	io.WriteString(w, b.String())
}
