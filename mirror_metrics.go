package registry

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

// mirrorStats are the counters /metrics reports.
type mirrorStats struct {
	hits, misses, coalesced, stale, evictions atomic.Int64
	upstreamRequests, upstreamBytes           atomic.Int64
	upstreamGets, upstreamHeads               atomic.Int64
	upstreamErrors, servedBytes               atomic.Int64
	storeBytes                                atomic.Int64
}

// serveMetrics writes the counters in the Prometheus text exposition
// format (version 0.0.4).
func (m *Mirror) serveMetrics(w http.ResponseWriter) {
	s := &m.stats
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
	metric("ocipull_mirror_upstream_errors_total", "counter", "Upstream fetches that failed.", s.upstreamErrors.Load())
	metric("ocipull_mirror_served_bytes_total", "counter", "Blob and manifest bytes served to clients.", s.servedBytes.Load())
	metric("ocipull_mirror_store_bytes", "gauge", "Bytes of blobs and manifests in the store.", s.storeBytes.Load())
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	io.WriteString(w, b.String())
}

// countingTransport counts the requests and body bytes of a mirror's
// upstream traffic.
type countingTransport struct {
	rt    http.RoundTripper
	stats *mirrorStats
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.stats.upstreamRequests.Add(1)
	resp, err := t.rt.RoundTrip(req)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &t.stats.upstreamBytes}
	}
	return resp, err
}

// CloseIdleConnections passes on to the wrapped transport.
func (t *countingTransport) CloseIdleConnections() {
	if c, ok := t.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
