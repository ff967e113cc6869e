package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

// Hostile files in the directory a pull writes or a serve reads: nothing
// outside it is created, truncated, appended to or served, and nothing
// there hangs the command.

// firstLayer is a layer of the fixture's linux/amd64 image.
func firstLayer(t *testing.T, f *fixture) v1.Descriptor {
	t.Helper()
	ctx := context.Background()
	img, err := oci.ImageForPlatform(ctx, f.idx, v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	return img.Layers()[0]
}

func blobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

func TestPullDoesNotFollowPartialSymlink(t *testing.T) {
	for _, resume := range []bool{false, true} {
		name := "fresh"
		if resume {
			name = "resume"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil)
			layer := firstLayer(t, f)
			dir := t.TempDir()
			outside := filepath.Join(t.TempDir(), "victim")
			secret := []byte("precious data outside the layout")
			if resume {
				// A prefix-sized victim makes the pull try to append to it.
				secret = bytes.Repeat([]byte("x"), int(layer.Size/2))
			}
			if err := os.WriteFile(outside, secret, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Dir(blobPath(dir, layer.Digest)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, blobPath(dir, layer.Digest)+".partial"); err != nil {
				t.Fatal(err)
			}
			code, _, errs := runCmd(t, "", "pull", "--platform", "linux/amd64", f.host+"/app/x:v1", dir)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			got, _ := os.ReadFile(outside)
			if !bytes.Equal(got, secret) {
				t.Errorf("the file outside the layout changed (%d bytes, was %d)", len(got), len(secret))
			}
			st, err := os.Lstat(blobPath(dir, layer.Digest))
			if err != nil || !st.Mode().IsRegular() {
				t.Errorf("blob: %v, mode %v: want a regular file", err, st.Mode())
			}
		})
	}
}

func TestPullRefusesSymlinkedBlobsDir(t *testing.T) {
	f := newFixture(t, nil)
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "blobs", "sha256")); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCmd(t, "", "pull", f.host+"/app/x:v1", dir)
	if code == 0 {
		t.Fatalf("pull into a layout whose blobs/sha256 is a symlink out of it succeeded")
	}
	if !strings.Contains(errs, "not a regular file") && !strings.Contains(errs, "directory") {
		t.Errorf("error does not say why: %s", errs)
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 0 {
		t.Errorf("%d files written outside the layout", len(entries))
	}
}

func TestPullReplacesFIFOAtBlobPath(t *testing.T) {
	f := newFixture(t, nil)
	layer := firstLayer(t, f)
	dir := t.TempDir()
	p := blobPath(dir, layer.Digest)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mkfifo(p); err != nil {
		t.Skip("no mkfifo:", err)
	}
	if err := mkfifo(p + ".partial"); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	var errs string
	go func() {
		code, _, e := runCmd(t, "", "pull", "--platform", "linux/amd64", f.host+"/app/x:v1", dir)
		errs = e
		done <- code
	}()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pull hangs on a FIFO in the layout")
	}
	if st, err := os.Lstat(p); err != nil || !st.Mode().IsRegular() {
		t.Errorf("blob path: %v %v, want a regular file", err, st.Mode())
	}
}

func TestLayoutFileModes(t *testing.T) {
	f := newFixture(t, nil)
	dir := t.TempDir()
	defer setUmask(0o022)()
	if code, _, errs := runCmd(t, "", "pull", f.host+"/app/x:v1", dir); code != 0 {
		t.Fatal(errs)
	}
	err := filepath.Walk(dir, func(p string, st os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		want := os.FileMode(0o644)
		if st.IsDir() {
			want = 0o755
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", strings.TrimPrefix(p, dir), st.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestServeRefusesBlobsOutsideLayout(t *testing.T) {
	f := newFixture(t, nil)
	dir := t.TempDir()
	if code, _, errs := runCmd(t, "", "pull", "--platform", "linux/amd64", f.host+"/app/x:v1", dir); code != 0 {
		t.Fatal(errs)
	}
	layer := firstLayer(t, f)
	// Replace the layer with a symlink to a secret of the same size.
	secret := bytes.Repeat([]byte("S"), int(layer.Size))
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, secret, 0o600)
	p := blobPath(dir, layer.Digest)
	os.Remove(p)
	if err := os.Symlink(outside, p); err != nil {
		t.Fatal(err)
	}
	srv, _, err := layoutServer(context.Background(), dir, "app/x")
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go serveUntilDone(ctx, ln, srv, func() {})
	for _, rng := range []string{"", "bytes=0-99"} {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/v2/app/x/blobs/"+string(layer.Digest), nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if bytes.Contains(body, []byte("SSSS")) {
			t.Errorf("Range %q: the secret outside the layout was served (status %d)", rng, resp.StatusCode)
		}
		if resp.StatusCode < 400 {
			t.Errorf("Range %q: status %d, want an error", rng, resp.StatusCode)
		}
	}
	// A regular file of the right size but the wrong content is not
	// served under the digest either.
	os.Remove(p)
	os.WriteFile(p, secret, 0o644)
	resp, err := http.Get("http://" + ln.Addr().String() + "/v2/app/x/blobs/" + string(layer.Digest))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 400 || bytes.Contains(body, []byte("SSSS")) {
		t.Errorf("wrong content served under its digest: status %d", resp.StatusCode)
	}
}

// A registry that never finishes a manifest cannot hold inspect or tags
// past --timeout (2 minutes by default), retries included.
func TestMetadataDeadline(t *testing.T) {
	f := newFixture(t, nil)
	f.inj.Add(faults.Rule{Path: "/manifests/", Fault: faults.Stall(time.Hour)})
	f.inj.Add(faults.Rule{Path: "/tags/", Fault: faults.Stall(time.Hour)})
	for _, args := range [][]string{
		{"inspect", "--timeout", "1s", f.host + "/app/x:v1"},
		{"tags", "--timeout", "1s", f.host + "/app/x"},
	} {
		start := time.Now()
		code, _, errs := runCmd(t, "", args...)
		if code == 0 {
			t.Errorf("%s: exit 0", args[0])
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: gave up after %v, want about 1s (%s)", args[0], d, errs)
		}
	}
	rf := addRemoteFlags(newFlagSet("x"))
	if *rf.timeout != 2*time.Minute {
		t.Errorf("default --timeout %v, want 2m", *rf.timeout)
	}
}

// Registry-controlled strings reach the terminal sanitised: media types
// and platform fields in inspect, error codes in the one-line error.
func TestTerminalEscapesSanitised(t *testing.T) {
	esc := "\x1b]0;pwned\x07\x1b[2J"
	mem := oci.NewMemory()
	cfg := mem.Add("application/vnd.evil"+esc, []byte(`{}`))
	img, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: []v1.Descriptor{mem.Add("application/x"+esc, []byte("layer"))}})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServerWith(t, "evil/app", "v1", img)
	code, out, errs := runCmd(t, "", "inspect", srv+"/evil/app:v1")
	if code != 0 {
		t.Fatalf("inspect: %d %s", code, errs)
	}
	if strings.ContainsAny(out+errs, "\x1b\x07") {
		t.Errorf("inspect printed escapes: %q", out)
	}
	bad := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"errors":[{"code":"NAME_UNKNOWN`+"\\u001b[31m"+`","message":"x\u001b]0;t\u0007"}]}`)
	}))
	code, out, errs = runCmd(t, "", "inspect", bad+"/a/b:v1")
	if code == 0 || strings.ContainsAny(out+errs, "\x1b\x07") {
		t.Errorf("error line carries escapes (exit %d): %q", code, errs)
	}
}

func httpServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

func newServerWith(t *testing.T, repo, tag string, ref oci.Ref) string {
	t.Helper()
	srv := registry.NewServer()
	if err := srv.AddRef(repo, tag, ref); err != nil {
		t.Fatal(err)
	}
	return httpServer(t, srv)
}
