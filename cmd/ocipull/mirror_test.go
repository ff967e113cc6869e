package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestMain lets a test run this binary as the ocipull command
// (OCIPULL_TEST_MAIN=1), so that it can be killed like the real one.
func TestMain(m *testing.M) {
	if os.Getenv("OCIPULL_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// lineWriter hands the first line written to it to a channel.
type lineWriter struct {
	once sync.Once
	buf  strings.Builder
	line chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if i := strings.IndexByte(w.buf.String(), '\n'); i >= 0 {
		w.once.Do(func() { w.line <- w.buf.String()[:i] })
	}
	return len(p), nil
}

// mirrorAddr reads host:port from the mirror's "mirroring ... at URL" line.
func mirrorAddr(t *testing.T, line string) string {
	t.Helper()
	i := strings.LastIndex(line, "://")
	if i < 0 {
		t.Fatalf("no address in %q", line)
	}
	return line[i+3:]
}

func TestMirrorCommand(t *testing.T) {
	f := newFixture(t, nil)
	cache := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWriter{line: make(chan string, 1)}
	var errs strings.Builder
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"mirror", "--cache", cache, "--upstream", "http://" + f.host, "--addr", "127.0.0.1:0", "--quiet", "--max-size", "1GiB"},
			strings.NewReader(""), out, &errs)
	}()
	var addr string
	select {
	case line := <-out.line:
		addr = mirrorAddr(t, line)
	case code := <-done:
		t.Fatalf("mirror exited %d: %s", code, errs.String())
	}
	dir := t.TempDir()
	if code, _, e := runCmd(t, "", "pull", "--quiet", addr+"/app/x:v1", dir); code != 0 {
		t.Fatalf("cold pull through the mirror: %s", e)
	}
	f.inj.Reset()
	if code, out, e := runCmd(t, "", "pull", "--quiet", addr+"/app/x:v1", t.TempDir()); code != 0 || strings.TrimSpace(out) != string(f.idx.Digest()) {
		t.Fatalf("warm pull: %d %q %s", code, out, e)
	}
	if n := f.inj.Requests(); n != 0 {
		t.Errorf("warm pull: %d upstream requests, want 0", n)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("mirror exit %d after its context ended: %s", code, errs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mirror did not stop")
	}
	// The cache is a layout that ocipull serve reads.
	if _, _, err := layoutServer(context.Background(), cache, "cached/app"); err != nil {
		t.Errorf("the cache is not a servable layout: %v", err)
	}
}

func TestMirrorFlags(t *testing.T) {
	for _, args := range [][]string{
		{"mirror"},
		{"mirror", "--cache", "x"},
		{"mirror", "--cache", "x", "--upstream", "ftp://a"},
		{"mirror", "--cache", "x", "--upstream", "http://a", "--upstream", "http://b"},
		{"mirror", "--cache", "x", "--upstream", "http://a", "--max-size", "12 parsecs"},
	} {
		if code, _, _ := runCmd(t, "", args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	for in, want := range map[string]int64{"500M": 500e6, "10GiB": 10 << 30, "1.5KiB": 1536, "42": 42} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

// TestMirrorKill9: a mirror process killed with SIGKILL in the middle of
// a fetch leaves nothing unverified servable; the restarted mirror
// resumes the partial fetch (a Range request upstream) and serves the
// verified blob.
func TestMirrorKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	mem := oci.NewMemory()
	layer := mem.Add("application/vnd.oci.image.layer.v1.tar", randomLayer(t, 4<<20))
	cfg := mem.Add("application/vnd.oci.image.config.v1+json", []byte(`{"architecture":"amd64","os":"linux"}`))
	img, err := mem.NewImage(ociManifest(cfg, layer))
	if err != nil {
		t.Fatal(err)
	}
	srv := registry.NewServer()
	if err := srv.AddRef("big/app", "v1", img); err != nil {
		t.Fatal(err)
	}
	inj := &faults.Injector{Next: srv}
	var mu sync.Mutex
	var ranges []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, string(layer.Digest)) && r.Method == "GET" {
			mu.Lock()
			ranges = append(ranges, r.Header.Get("Range"))
			mu.Unlock()
		}
		inj.ServeHTTP(w, r)
	}))
	defer up.Close()
	// The first fetch drips, so the kill lands mid-blob.
	inj.Add(faults.Rule{Method: "GET", Path: string(layer.Digest), Times: 1, Fault: faults.Drip(0, 256<<10, 50*time.Millisecond)})
	cache := t.TempDir()
	start := func() (*exec.Cmd, string) {
		cmd := exec.Command(os.Args[0], "mirror", "--cache", cache, "--upstream", up.URL, "--addr", "127.0.0.1:0", "--quiet")
		cmd.Env = append(os.Environ(), "OCIPULL_TEST_MAIN=1")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			cmd.Process.Kill()
			t.Fatalf("mirror output: %v", err)
		}
		return cmd, mirrorAddr(t, strings.TrimSpace(line))
	}
	cmd, addr := start()
	blobURL := "http://" + addr + "/v2/big/app/blobs/" + string(layer.Digest)
	resp, err := http.Get("http://" + addr + "/v2/big/app/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get(blobURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	resp.Body.Close()
	blobPath := filepath.Join(cache, "blobs", "sha256", layer.Digest.Encoded())
	if _, err := os.Stat(blobPath); err == nil {
		t.Fatal("the blob is in place after a kill mid-fetch")
	}
	if st, err := os.Stat(blobPath + ".partial"); err != nil || st.Size() == 0 {
		t.Fatalf("no partial fetch left: %v", err)
	}
	cmd, addr = start()
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	c := (&registry.Registry{Scheme: "http", Host: addr}).Repository("big/app")
	ref, err := c.Read(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ref.(*oci.Image).OpenBlob(context.Background(), layer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	rc.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(ranges) != 2 || !strings.HasPrefix(ranges[1], "bytes=") {
		t.Errorf("upstream blob GETs: %q, want one whole and one resumed range", ranges)
	}
}

func randomLayer(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func ociManifest(cfg v1.Descriptor, layers ...v1.Descriptor) v1.Manifest {
	return v1.Manifest{Config: cfg, Layers: layers}
}
