package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ocipull/registry/internal/testwait"

	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// TestMirrorLogFieldsJSON: with --log-format json, the record of every
// request carries the same fields — time, request id, client, user,
// method, path, status, bytes, duration, outcome, upstream — for a hit, a
// miss and the request that joined it (coalesced), a stale answer (with
// its cause) and a stream the client cut (aborted); the request id is
// also the X-Request-Id the client got.
func TestMirrorLogFieldsJSON(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	amd, _ := oci.ImageForPlatform(ctx, f.idx, ocitest.Platforms("linux/amd64")[0])
	arm, _ := oci.ImageForPlatform(ctx, f.idx, ocitest.Platforms("linux/arm64/v8")[0])
	shared, cut := amd.Layers()[0], arm.Layers()[0]
	for _, d := range []string{string(shared.Digest), string(cut.Digest)} {
		f.inj.Add(faults.Rule{Method: http.MethodGet, Path: d, Fault: faults.Throttle(4 << 20)})
	}
	_, addr, stderr := startMirrorProcess(t, "--cache", t.TempDir(), "--upstream", "http://"+f.host, "--log-format", "json", "--ttl", "1ms")
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Request-Id")
	}
	// A miss and a request that joins it.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if code, _ := get("/v2/app/x/blobs/" + string(shared.Digest)); code != 200 {
				t.Errorf("coalesced pair: %d", code)
			}
		})
	}
	wg.Wait()
	// A hit.
	_, hitID := get("/v2/app/x/blobs/" + string(shared.Digest))
	// A stream the client cuts.
	resp, err := http.Get("http://" + addr + "/v2/app/x/blobs/" + string(cut.Digest))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 1000))
	resp.Body.Close()
	// A stale answer: the tag was stored; the upstream now fails.
	if code, _ := get("/v2/app/x/manifests/v1"); code != 200 {
		t.Fatalf("manifest: %d", code)
	}
	f.inj.Add(faults.Rule{Path: "/manifests/", Fault: faults.Status(http.StatusServiceUnavailable, "")})
	if code, _ := get("/v2/app/x/manifests/v1"); code != 200 {
		t.Fatalf("stale manifest: %d", code)
	}

	records := map[string]map[string]any{}
	parse := func() {
		for _, line := range strings.Split(stderr.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "request" {
				if o, _ := rec["outcome"].(string); records[o] == nil {
					records[o] = rec
				}
				if rec["request_id"] == hitID {
					records["hit-by-id"] = rec
				}
			}
		}
	}
	// A record is written when its request is done, which may be after
	// the client has its answer.
	testwait.Until(t, "the five outcomes' records", func() bool {
		parse()
		for _, o := range []string{"miss", "coalesced", "hit", "stale", "aborted"} {
			if records[o] == nil {
				return false
			}
		}
		return true
	})
	for _, outcome := range []string{"miss", "coalesced", "hit", "stale", "aborted"} {
		rec := records[outcome]
		if rec == nil {
			t.Errorf("no %s record in:\n%s", outcome, lastLines(stderr.String(), 12))
			continue
		}
		for _, field := range []string{"time", "level", "request_id", "client", "user", "method", "path", "status", "bytes", "duration", "outcome", "upstream"} {
			if _, ok := rec[field]; !ok {
				t.Errorf("%s record lacks %s: %v", outcome, field, rec)
			}
		}
		if rec["upstream"] == "" {
			t.Errorf("%s record names no upstream: %v", outcome, rec)
		}
	}
	if rec := records["stale"]; rec != nil && rec["cause"] == nil {
		t.Errorf("the stale record has no cause: %v", rec)
	}
	if records["hit-by-id"] == nil || records["hit-by-id"]["outcome"] != "hit" {
		t.Errorf("X-Request-Id %q does not name the hit's record", hitID)
	}
}
