package mirror_test

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/mirror"
)

// TestMetricsStoreAndRateLimit: after real traffic, /metrics counts the
// store's items and tags, and carries the pull allowance the upstream
// last stated (Docker Hub's RateLimit headers), per upstream.
func TestMetricsStoreAndRateLimit(t *testing.T) {
	up := newUpstream(t, 1000, 2000)
	up.inj.Add(faults.Rule{Path: "/manifests/", Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		w.Header().Set("RateLimit-Limit", "100;w=21600")
		w.Header().Set("RateLimit-Remaining", "76;w=21600")
		next.ServeHTTP(w, r)
	})})
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	if _, err := mirrorPull(t.Context(), clientFor(t, ms, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	m := mirrorMetrics(t, ms)
	label := fmt.Sprintf(`{ns="",upstream=%q}`, strings.TrimPrefix(up.ts.URL, "http://"))
	if m["ocipull_mirror_upstream_ratelimit_limit"+label] != 100 || m["ocipull_mirror_upstream_ratelimit_remaining"+label] != 76 {
		t.Errorf("rate limit: limit %d, remaining %d; want 100, 76", m["ocipull_mirror_upstream_ratelimit_limit"+label], m["ocipull_mirror_upstream_ratelimit_remaining"+label])
	}
	// The manifest, the config and two layers.
	if n := m[`ocipull_mirror_store_items{kind="content"}`]; n != 4 {
		t.Errorf("store items: %d, want 4", n)
	}
	if n := m["ocipull_mirror_tags"]; n != 1 {
		t.Errorf("tags: %d, want 1", n)
	}
}

// TestMetricsExpositionLint checks /metrics as Prometheus' linter would:
// every family has HELP and TYPE once, before its samples; names are
// valid, counters end in _total and nothing else does; units are base
// units (seconds, bytes); histograms have cumulative buckets ending in
// +Inf, with _sum and _count; no sample is duplicated.
func TestMetricsExpositionLint(t *testing.T) {
	up := newUpstream(t, 1000)
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	rawGet(t, ms, "GET", "/v2/team/app/manifests/v1")
	resp, err := http.Get(ms.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	name := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	sample := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+]+|\+Inf|NaN)$`)
	types, helps, seen := map[string]string{}, map[string]bool{}, map[string]bool{}
	family := func(sampleName string) string {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base := strings.TrimSuffix(sampleName, suffix); base != sampleName && types[base] == "histogram" {
				return base
			}
		}
		return sampleName
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		switch {
		case strings.HasPrefix(line, "# HELP "):
			f := strings.Fields(line)[2]
			if helps[f] || !name.MatchString(f) {
				t.Errorf("HELP of %q twice or invalid", f)
			}
			helps[f] = true
		case strings.HasPrefix(line, "# TYPE "):
			fields := strings.Fields(line)
			f, typ := fields[2], fields[3]
			if _, dup := types[f]; dup || !helps[f] {
				t.Errorf("TYPE of %q twice or before its HELP", f)
			}
			types[f] = typ
			if (typ == "counter") != strings.HasSuffix(f, "_total") {
				t.Errorf("%s %s: counters, and only counters, end in _total", typ, f)
			}
			for _, bad := range []string{"_ms", "_milliseconds", "_kb", "_mb", "_minutes"} {
				if strings.Contains(f, bad) {
					t.Errorf("%s: not a base unit", f)
				}
			}
		default:
			m := sample.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("malformed sample %q", line)
				continue
			}
			if _, ok := types[family(m[1])]; !ok {
				t.Errorf("sample %q before its family's TYPE", line)
			}
			key := m[1] + m[2]
			if seen[key] {
				t.Errorf("sample %s twice", key)
			}
			seen[key] = true
		}
	}
	for f, typ := range types {
		if typ == "histogram" && !(seen[f+"_count"] || anyPrefix(seen, f+"_count{")) {
			t.Errorf("histogram %s has no _count", f)
		}
	}
}

func anyPrefix(set map[string]bool, prefix string) bool {
	for k := range set {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// TestRequestID: every answer carries X-Request-Id (the id its log record
// has); a load balancer's own id is kept when it is a plain token of at
// most 64 characters, and replaced otherwise, so that no client string
// reaches the log raw.
func TestRequestID(t *testing.T) {
	up := newUpstream(t, 1000)
	_, ms := newMirror(t, t.TempDir(), map[string]*upstreamFixture{"": up}, nil)
	_, h, _, err := rawGet(t, ms, "GET", "/v2/")
	if err != nil || h.Get("X-Request-Id") == "" {
		t.Fatalf("no X-Request-Id of the cache's own: %v %v", h, err)
	}
	own := h.Get("X-Request-Id")
	if _, h2, _, _ := rawGet(t, ms, "GET", "/v2/"); h2.Get("X-Request-Id") == own {
		t.Error("two requests got the same id")
	}
	if _, h, _, _ := rawGet(t, ms, "GET", "/v2/", "X-Request-Id", "lb-7f3a.01_x"); h.Get("X-Request-Id") != "lb-7f3a.01_x" {
		t.Errorf("the balancer's id was not kept: %q", h.Get("X-Request-Id"))
	}
	for _, bad := range []string{"a b", "../etc/passwd", `{"msg":"forged"}`, strings.Repeat("x", 65)} {
		if _, h, _, _ := rawGet(t, ms, "GET", "/v2/", "X-Request-Id", bad); h.Get("X-Request-Id") == bad || h.Get("X-Request-Id") == "" {
			t.Errorf("id %q: answered with %q, want one of the cache's own", bad, h.Get("X-Request-Id"))
		}
	}
}

// TestMetricsSharedAcrossCaches: a cache given the Metrics of another
// (the next generation of a reloading server) reports the counts the
// first one made — requests, misses, the upstream's latency histogram —
// and adds its own to them.
func TestMetricsSharedAcrossCaches(t *testing.T) {
	up := newUpstream(t, 1000)
	shared := mirror.NewMetrics()
	dir := t.TempDir()
	share := func(c *mirror.Config) { c.Metrics = shared }
	_, first := newMirror(t, dir, map[string]*upstreamFixture{"": up}, share)
	if _, err := mirrorPull(t.Context(), clientFor(t, first, "team/app"), "v1"); err != nil {
		t.Fatal(err)
	}
	was := mirrorMetrics(t, first)
	_, next := newMirror(t, dir, map[string]*upstreamFixture{"": up}, share)
	now := mirrorMetrics(t, next)
	label := fmt.Sprintf(`{ns="",upstream=%q}`, strings.TrimPrefix(up.ts.URL, "http://"))
	for _, name := range []string{"ocipull_mirror_misses_total", `ocipull_mirror_requests_total{class="2xx"}`,
		"ocipull_mirror_upstream_request_duration_seconds_count" + label} {
		if was[name] == 0 || now[name] < was[name] {
			t.Errorf("%s: %d in the first cache, %d in the next", name, was[name], now[name])
		}
	}
}
