package faults_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ocipull/registry/faults"
)

var body = bytes.Repeat([]byte("0123456789"), 100)

func origin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Origin", "yes")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}

func do(t *testing.T, f faults.Fault, hdr map[string]string) (*http.Response, []byte, error) {
	t.Helper()
	inj := &faults.Injector{Next: origin()}
	inj.Add(faults.Rule{Fault: f})
	ts := httptest.NewServer(inj)
	t.Cleanup(ts.Close)
	req, _ := http.NewRequest("GET", ts.URL+"/x", nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestFaults(t *testing.T) {
	t.Run("CutAfter", func(t *testing.T) {
		_, b, err := do(t, faults.CutAfter(100), nil)
		if err == nil || len(b) != 100 {
			t.Errorf("got %d bytes, err %v; want 100 and an error", len(b), err)
		}
	})
	t.Run("StallAfter", func(t *testing.T) {
		start := time.Now()
		_, b, err := do(t, faults.StallAfter(10, 200*time.Millisecond), nil)
		if err == nil || len(b) != 10 || time.Since(start) < 150*time.Millisecond {
			t.Errorf("got %d bytes after %v, err %v", len(b), time.Since(start), err)
		}
	})
	t.Run("Drip", func(t *testing.T) {
		start := time.Now()
		_, b, err := do(t, faults.Drip(900, 25, 20*time.Millisecond), nil)
		// 900 bytes at once, then 4 bursts of 25 bytes 20 ms apart.
		if err != nil || !bytes.Equal(b, body) || time.Since(start) < 60*time.Millisecond {
			t.Errorf("got %d bytes after %v, err %v", len(b), time.Since(start), err)
		}
	})
	t.Run("Status", func(t *testing.T) {
		resp, b, _ := do(t, faults.Status(429, "7"), nil)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || !strings.Contains(string(b), "TOOMANYREQUESTS") {
			t.Errorf("got %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
	})
	t.Run("IgnoreRange", func(t *testing.T) {
		resp, b, _ := do(t, faults.IgnoreRange(), map[string]string{"Range": "bytes=10-"})
		if resp.StatusCode != 200 || len(b) != len(body) {
			t.Errorf("got %d, %d bytes", resp.StatusCode, len(b))
		}
	})
	t.Run("WrongContentRange", func(t *testing.T) {
		resp, _, _ := do(t, faults.WrongContentRange(), map[string]string{"Range": "bytes=10-"})
		if got := resp.Header.Get("Content-Range"); got != "bytes 11-999/1000" {
			t.Errorf("Content-Range %q", got)
		}
	})
	t.Run("LieContentLength", func(t *testing.T) {
		_, _, err := do(t, faults.LieContentLength(10), nil)
		if err == nil {
			t.Error("a promised-but-missing tail read cleanly")
		}
	})
	t.Run("Corrupt", func(t *testing.T) {
		_, b, err := do(t, faults.Corrupt(), nil)
		if err != nil || len(b) != len(body) || b[0] == body[0] || !bytes.Equal(b[1:], body[1:]) {
			t.Errorf("got %d bytes, err %v", len(b), err)
		}
	})
	t.Run("Oversize", func(t *testing.T) {
		for i := 0; i < 2; i++ { // the fault must not use itself up
			_, b, err := do(t, faults.Oversize(10), nil)
			if err != nil || len(b) != len(body)+10 {
				t.Errorf("run %d: got %d bytes, err %v", i, len(b), err)
			}
		}
	})
	t.Run("Redirect", func(t *testing.T) {
		resp, _, _ := do(t, faults.Redirect("http://storage.example/base"), nil)
		if resp.StatusCode != 307 || resp.Header.Get("Location") != "http://storage.example/base/x" {
			t.Errorf("got %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("DropHeader and SetHeader", func(t *testing.T) {
		resp, _, _ := do(t, faults.DropHeader("X-Origin"), nil)
		if resp.Header.Get("X-Origin") != "" {
			t.Error("header not dropped")
		}
		resp, _, _ = do(t, faults.SetHeader("Content-Type", "text/x-test"), nil)
		if resp.Header.Get("Content-Type") != "text/x-test" {
			t.Error("header not set")
		}
	})
	t.Run("RejectAuthorization", func(t *testing.T) {
		var leaks int64
		resp, _, _ := do(t, faults.RejectAuthorization(&leaks), map[string]string{"Authorization": "Bearer x"})
		if resp.StatusCode != 400 || leaks != 1 {
			t.Errorf("got %d, leaks %d", resp.StatusCode, leaks)
		}
	})
}

func TestRuleSelection(t *testing.T) {
	inj := &faults.Injector{Next: origin()}
	inj.Add(faults.Rule{Path: "/a", Nth: 2, Fault: faults.Status(503, "")})
	inj.Add(faults.Rule{Path: "/b", Times: 2, Fault: faults.Status(500, "")})
	inj.Add(faults.Rule{Method: "HEAD", Fault: faults.Status(404, "")})
	ts := httptest.NewServer(inj)
	defer ts.Close()
	status := func(method, path string) int {
		req, _ := http.NewRequest(method, ts.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var got []int
	for _, p := range []string{"/a", "/a", "/a", "/b", "/b", "/b"} {
		got = append(got, status("GET", p))
	}
	got = append(got, status("HEAD", "/c"))
	want := []int{200, 503, 200, 500, 500, 200, 404}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("statuses %v, want %v", got, want)
		}
	}
	if inj.Requests() != 7 || inj.RequestsTo("/a") != 3 {
		t.Errorf("counters: %d, %d", inj.Requests(), inj.RequestsTo("/a"))
	}
}

// Throttle holds a body to its rate, and Latency delays the answer.
func TestThrottleAndLatency(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 200<<10)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	for name, tc := range map[string]struct {
		fault faults.Fault
		min   time.Duration
	}{
		"throttle 1 MB/s": {faults.Throttle(1 << 20), 150 * time.Millisecond}, // 200 KiB, the first slice free
		"latency 100ms":   {faults.Stall(100 * time.Millisecond), 100 * time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			inj := &faults.Injector{Next: h}
			inj.Add(faults.Rule{Fault: tc.fault})
			ts := httptest.NewServer(inj)
			defer ts.Close()
			start := time.Now()
			resp, err := http.Get(ts.URL)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if d := time.Since(start); d < tc.min || len(b) != len(body) {
				t.Errorf("%d bytes in %v, want all %d in at least %v", len(b), d, len(body), tc.min)
			}
		})
	}
}
