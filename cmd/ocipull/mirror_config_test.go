package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ocipull/registry/internal/testwait"
)

// TestMirrorConfigRefusedWithLine: every kind of mistake in a --config
// file is refused with the file, the line and the reason.
func TestMirrorConfigRefusedWithLine(t *testing.T) {
	const head = "store = \"/tmp/s\"\n[upstream.\"docker.io\"]\nurl = \"https://registry-1.docker.io\"\n"
	for _, c := range []struct{ doc, want string }{
		{head + "tag_ttl = \"5 minutes\"\n", `:4: upstream."docker.io".tag_ttl: want a positive duration`},
		{head + "colour = \"blue\"\n", `:4: upstream."docker.io".colour: unknown key`},
		{"lissten = \":5000\"\n" + head, `:1: lissten: unknown key`},
		{head + "immutable_tags = [\"v[\"]\n", `:4: upstream."docker.io".immutable_tags: "v[" is not a pattern`},
		{head + "credentials = \"vault:x\"\n", `:4: upstream."docker.io".credentials: want docker-config`},
		{head + "credentials = \"none\"\nusername = \"u\"\npassword = \"p\"\n", `upstream."docker.io".credentials: credentials and username/password exclude each other`},
		{head + "default = true\n[upstream.b]\nurl = \"https://b\"\ndefault = true\n", `:7: upstream.b.default: two upstreams are the default`},
		{"store = \"/tmp/s\"\n[upstream.x]\nurl = \"ftp://x\"\n", `:3: upstream.x.url: want https://`},
		{head + "[tls]\ncert = \"/c.pem\"\n", `:5: tls.cert: cert and key go together`},
		{head + "[auth]\nanonymous = [\"*\"]\n", `auth.htpasswd: anonymous, grants and admins need an htpasswd file`},
		{head + "max_conns = 1.5\n", `:4: float`},
		{"store = \"/tmp/s\"\n", `no [upstream."NS"] table`},
		{head + "log_format = \"xml\"\n", `upstream."docker.io".log_format: unknown key`},
		{"log_format = \"xml\"\n" + head, `:1: log_format: want one of text, json`},
	} {
		file := filepath.Join(t.TempDir(), "mirror.toml")
		os.WriteFile(file, []byte(c.doc), 0o644)
		_, err := readMirrorConfig(file)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), file) {
			t.Errorf("%q:\n got %v\nwant %s", c.doc, err, c.want)
		}
	}
}

// TestMirrorConfigReadmeExample: the configuration reference's full
// example in the README is a valid file, and means what it says.
func TestMirrorConfigReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const marker = "```toml\n# /etc/ocipull/mirror.toml"
	_, rest, ok := strings.Cut(string(readme), marker)
	doc, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no ```toml block starting # /etc/ocipull/mirror.toml in the README")
	}
	dir := t.TempDir()
	// The example's files, where the example says they are.
	doc = strings.ReplaceAll(doc, "/etc/ocipull/", dir+"/")
	for _, f := range []string{"htpasswd", "upstream-ca.pem"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}
	file := filepath.Join(dir, "mirror.toml")
	os.WriteFile(file, []byte(doc), 0o644)
	s, err := readMirrorConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	hub := s.upstreams[""]
	if hub == nil || hub.url != "https://registry-1.docker.io" || hub.tagTTL != 10*time.Minute || len(hub.immutable) == 0 {
		t.Errorf("the default upstream: %+v", hub)
	}
	if ghcr := s.upstreams["ghcr.io"]; ghcr == nil || !ghcr.noRanges || ghcr.credentialsNote != "docker-credential-gh" {
		t.Errorf("ghcr.io: %+v", ghcr)
	}
	if s.maxSize != 200<<30 || s.logFormat != "json" || s.adminListen == "" || len(s.grants) != 2 {
		t.Errorf("settings: %+v", s)
	}
}

// TestMirrorReloadUnderTraffic: SIGHUP re-reads the --config file while
// clients pull without pause: a valid file takes effect (a new upstream
// answers), an invalid one is refused with its line and the running
// configuration stays, and no request fails throughout.
func TestMirrorReloadUnderTraffic(t *testing.T) {
	a, b := newFixture(t, nil), newFixture(t, nil)
	dir := t.TempDir()
	file := filepath.Join(dir, "mirror.toml")
	write := func(doc string) {
		tmp := file + ".new"
		os.WriteFile(tmp, []byte(doc), 0o644)
		os.Rename(tmp, file)
	}
	base := fmt.Sprintf("store = %q\nlog_format = \"json\"\n[upstream.a]\ndefault = true\nurl = \"http://%s\"\n", filepath.Join(dir, "store"), a.host)
	write(base)
	cmd, addr, stderr := startMirrorProcess(t, "--config", file)
	get := func(path string) (int, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, err
	}
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, p := range []string{"/v2/app/x/manifests/v1", "/v2/app/x/blobs/" + string(a.idx.Digest())} {
					sent.Add(1)
					if code, err := get(p); err != nil || code != 200 {
						failed.Add(1)
						firstFailure.CompareAndSwap(nil, fmt.Sprintf("%s: %d %v", p, code, err))
					}
				}
			}
		})
	}
	testwait.Until(t, "traffic", func() bool { return sent.Load() > 200 })
	if code, _ := get("/v2/app/x/manifests/v1?ns=b.example"); code == 200 {
		t.Fatal("an upstream not configured yet answered")
	}
	answered := func() int64 {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, `ocipull_mirror_requests_total{class="2xx"} `); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		t.Fatalf("no 2xx requests counter on /metrics")
		return 0
	}
	before := answered()
	// A valid change: a second upstream.
	write(base + fmt.Sprintf("[upstream.\"b.example\"]\nurl = \"http://%s\"\n", b.host))
	cmd.Process.Signal(syscall.SIGHUP)
	testwait.Until(t, "the reload", func() bool { return strings.Contains(stderr.String(), "configuration reloaded") })
	// The counters carry on across the reload.
	if after := answered(); after < before {
		t.Errorf("requests answered: %d before the reload, %d after (reset)", before, after)
	}
	if code, err := get("/v2/app/x/manifests/v1?ns=b.example"); code != 200 {
		t.Errorf("the upstream added by the reload: %d %v", code, err)
	}
	// An invalid change: refused with its line, the running one stays.
	write(base + "[upstream.\"b.example\"]\nurl = \"http://" + b.host + "\"\ntag_ttl = \"soon\"\n")
	cmd.Process.Signal(syscall.SIGHUP)
	testwait.Until(t, "the refusal", func() bool { return strings.Contains(stderr.String(), "configuration refused") })
	if !strings.Contains(stderr.String(), "mirror.toml:8: upstream.\\\"b.example\\\".tag_ttl") {
		t.Errorf("the refusal does not name the line and key:\n%s", lastLines(stderr.String(), 3))
	}
	if code, err := get("/v2/app/x/manifests/v1?ns=b.example"); code != 200 {
		t.Errorf("after a refused reload, the running configuration's upstream: %d %v", code, err)
	}
	n := sent.Load()
	testwait.Until(t, "more traffic", func() bool { return sent.Load() > n+50 })
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed across the reloads; first: %v", failed.Load(), sent.Load(), firstFailure.Load())
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
