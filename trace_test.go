package registry_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
)

// Trace sees every request once: method, redacted URL, status, the body
// bytes read; a failed connection's Err is the cause, not the request
// line again.
func TestTraceReportsEveryRequest(t *testing.T) {
	f := newFixture(t, 50_000)
	f.inj.Add(faults.Rule{Path: "/manifests/", Times: 1, Fault: faults.Status(http.StatusServiceUnavailable, "")})
	var mu sync.Mutex
	var traces []registry.RequestTrace
	f.c.Registry().Trace = func(rt registry.RequestTrace) {
		mu.Lock()
		traces = append(traces, rt)
		mu.Unlock()
	}
	img, err := pullVerified(t, f.c, "img")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := append([]registry.RequestTrace(nil), traces...)
	mu.Unlock()
	if len(got) != f.inj.Requests() {
		t.Fatalf("%d traces for %d requests", len(got), f.inj.Requests())
	}
	var blobBytes int64
	statuses := map[int]int{}
	for _, rt := range got {
		statuses[rt.Status]++
		if rt.Err != nil || rt.Method != http.MethodGet || !strings.HasPrefix(rt.URL, "http://") {
			t.Errorf("trace %+v", rt)
		}
		if strings.Contains(rt.URL, "/blobs/") {
			blobBytes += rt.Bytes
		}
	}
	if statuses[http.StatusServiceUnavailable] != 1 || statuses[http.StatusOK] != len(got)-1 {
		t.Errorf("statuses %v, want one 503 and the rest 200", statuses)
	}
	want := img.Manifest().Config.Size
	for _, l := range img.Layers() {
		want += l.Size
	}
	if blobBytes != want {
		t.Errorf("traces count %d blob bytes, want %d", blobBytes, want)
	}

	// A closed port: Err says why, and does not repeat the request.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var failed []registry.RequestTrace
	c := (&registry.Registry{Scheme: "http", Host: addr, GetBackOff: fastBackOff,
		Trace: func(rt registry.RequestTrace) { mu.Lock(); failed = append(failed, rt); mu.Unlock() },
	}).Repository("a/b")
	if _, err := c.Read(context.Background(), "v1"); err == nil {
		t.Fatal("read from a closed port succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failed) == 0 {
		t.Fatal("no trace for failed requests")
	}
	for _, rt := range failed {
		if rt.Err == nil || rt.Status != 0 || strings.Contains(rt.Err.Error(), addr+"/v2/") || !strings.Contains(rt.Err.Error(), "refused") {
			t.Errorf("failed request trace %+v (Err %v), want the cause alone", rt, rt.Err)
		}
	}
}
