package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ocipull/registry"
)

// authRecorder is an upstream that records every Authorization header.
type authRecorder struct {
	mu   sync.Mutex
	seen []string
	next http.Handler
}

func (a *authRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.seen = append(a.seen, r.Header.Get("Authorization"))
	a.mu.Unlock()
	a.next.ServeHTTP(w, r)
}

func (a *authRecorder) saw(s string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, h := range a.seen {
		if strings.Contains(h, s) {
			return true
		}
	}
	return false
}

// Cache item 8: `ocipull mirror -u USER --password-stdin` sent the
// password to every upstream. Now it goes to one: --credentials-for,
// else the only upstream, else the default one.
func TestMirrorPasswordGoesToOneUpstream(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	fa, fb := newFixture(t, nil), newFixture(t, nil)
	a := &authRecorder{next: fa.inj}
	b := &authRecorder{next: fb.inj}
	// Both ask for Basic credentials, as ECR does.
	for _, f := range []*fixture{fa, fb} {
		srv := registry.NewServer()
		srv.Auth = &registry.ServerAuth{Basic: true, Users: map[string]registry.ServerUser{"bot": {Password: "hunter2", Repositories: []string{"*"}}}}
		srv.AddRef("app/x", "v1", f.idx)
		f.inj.Next = srv
	}
	as, bs := httptest.NewServer(a), httptest.NewServer(b)
	defer as.Close()
	defer bs.Close()
	secret := base64.StdEncoding.EncodeToString([]byte("bot:hunter2"))
	for _, tc := range []struct {
		name      string
		extra     []string
		toA, toB  bool
		exitUsage bool
	}{
		{name: "default upstream", toA: true},
		{name: "credentials-for b", extra: []string{"--credentials-for", "b.example"}, toB: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.mu.Lock()
			a.seen = nil
			a.mu.Unlock()
			b.mu.Lock()
			b.seen = nil
			b.mu.Unlock()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := &lineWriter{line: make(chan string, 1)}
			var errs strings.Builder
			done := make(chan int, 1)
			args := append([]string{"mirror", "--cache", t.TempDir(), "--upstream", as.URL, "--upstream", "b.example=" + bs.URL,
				"--addr", "127.0.0.1:0", "--quiet", "-u", "bot", "--password-stdin"}, tc.extra...)
			go func() { done <- run(ctx, args, strings.NewReader("hunter2\n"), out, &errs) }()
			var addr string
			select {
			case line := <-out.line:
				addr = mirrorAddr(t, line)
			case code := <-done:
				t.Fatalf("mirror exited %d: %s", code, errs.String())
			}
			for _, path := range []string{"/v2/app/x/manifests/v1", "/v2/b.example/app/x/manifests/v1"} {
				resp, err := http.Get("http://" + addr + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			if a.saw(secret) != tc.toA || b.saw(secret) != tc.toB {
				t.Errorf("password sent to a: %v (want %v), to b: %v (want %v)", a.saw(secret), tc.toA, b.saw(secret), tc.toB)
			}
			cancel()
			<-done
		})
	}
}

// startMirrorProcess runs `ocipull mirror` as a process of its own and
// returns it, its address and its stderr.
func startMirrorProcess(t *testing.T, args ...string) (*exec.Cmd, string, *syncBuffer) {
	cmd, serving, _, stderr := startMirrorWithAdmin(t, args...)
	return cmd, serving, stderr
}

// startMirrorWithAdmin is startMirrorProcess that also returns the admin
// listener's address ("" without --admin-addr).
func startMirrorWithAdmin(t *testing.T, args ...string) (cmd *exec.Cmd, serving, admin string, stderr *syncBuffer) {
	t.Helper()
	cmd = exec.Command(os.Args[0], append([]string{"mirror", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "OCIPULL_TEST_MAIN=1")
	stderr = &syncBuffer{}
	cmd.Stderr = stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := bufio.NewReader(stdout)
	for serving == "" {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("mirror output: %v; stderr: %s", err, stderr.String())
		}
		if strings.HasPrefix(line, "admin at ") {
			admin = mirrorAddr(t, strings.TrimSpace(line))
		} else {
			serving = mirrorAddr(t, strings.TrimSpace(line))
		}
	}
	return cmd, serving, admin, stderr
}

// Cache item 18: SIGHUP killed the cache, and -v did nothing. Now SIGHUP
// leaves it serving, --log-format json writes one JSON record per
// request with its fields, and SIGTERM ends it cleanly.
func TestMirrorProcessSignalsAndLog(t *testing.T) {
	f := newFixture(t, nil)
	cmd, addr, stderr := startMirrorProcess(t, "--cache", t.TempDir(), "--upstream", "http://"+f.host, "--log-format", "json", "-v")
	get := func() int {
		resp, err := http.Get("http://" + addr + "/v2/app/x/manifests/v1")
		if err != nil {
			t.Fatalf("after SIGHUP: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != 200 {
		t.Fatalf("status %d", code)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The process is still there and serving (a signal it did not ignore
	// would have ended it before it could answer).
	for range 3 {
		if code := get(); code != 200 {
			t.Fatalf("after SIGHUP: status %d", code)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case <-waited:
	case <-time.After(time.Minute):
		t.Fatal("SIGTERM did not end the cache")
	}
	var requests, debug int
	for _, line := range strings.Split(stderr.String(), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON record: %q", line)
		}
		switch rec["msg"] {
		case "request":
			requests++
			for _, k := range []string{"time", "method", "path", "status", "bytes", "duration", "client", "outcome", "upstream"} {
				if _, ok := rec[k]; !ok {
					t.Errorf("request record without %q: %s", k, line)
				}
			}
		case "upstream request":
			debug++
		}
	}
	if requests != 4 {
		t.Errorf("%d request records, want 4:\n%s", requests, stderr.String())
	}
	if debug == 0 {
		t.Errorf("-v logged no upstream request:\n%s", stderr.String())
	}
}

// --admin-addr: /metrics, /healthz, /readyz and the profiler on their own
// listener; /metrics leaves the serving port.
func TestMirrorAdminListener(t *testing.T) {
	f := newFixture(t, nil)
	cmd := exec.Command(os.Args[0], "mirror", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--quiet",
		"--cache", t.TempDir(), "--upstream", "http://"+f.host)
	cmd.Env = append(os.Environ(), "OCIPULL_TEST_MAIN=1")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := bufio.NewReader(stdout)
	var admin, serving string
	for admin == "" || serving == "" {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("mirror output: %v", err)
		}
		if strings.HasPrefix(line, "admin at ") {
			admin = mirrorAddr(t, strings.TrimSpace(line))
		} else {
			serving = mirrorAddr(t, strings.TrimSpace(line))
		}
	}
	status := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("http://" + serving + "/v2/app/x/manifests/v1"); got != 200 {
		t.Fatalf("pull through the cache: %d", got)
	}
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/readyz": 200, "/debug/pprof/": 200} {
		if got := status("http://" + admin + path); got != want {
			t.Errorf("admin %s: %d, want %d", path, got, want)
		}
	}
	if got := status("http://" + serving + "/metrics"); got != 404 {
		t.Errorf("/metrics on the serving port with an admin listener: %d, want 404", got)
	}
}
