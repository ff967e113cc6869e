package main

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

// TestPullKill9Resumes: `ocipull pull` killed with SIGKILL while it lands
// a large layer (through the pipeline, with direct I/O where the disk
// takes it) leaves a partial file that the next run resumes with a Range
// request and verifies whole; the layout then holds the layer's exact
// bytes and nothing partial.
func TestPullKill9Resumes(t *testing.T) {
	if runtime.GOOS == "windows" || testing.Short() {
		t.Skip("signals")
	}
	mem := oci.NewMemory()
	content := make([]byte, 24<<20+4321)
	rand.Read(content)
	layer := mem.Add(v1.MediaTypeImageLayer, content)
	cfg, _ := mem.AddJSON(v1.MediaTypeImageConfig, v1.Image{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, RootFS: v1.RootFS{Type: "layers"}})
	img, err := mem.NewImage(v1.Manifest{Config: cfg, Layers: []v1.Descriptor{layer}})
	if err != nil {
		t.Fatal(err)
	}
	srv := registry.NewServer()
	if err := srv.AddRef("app/big", "v1", img); err != nil {
		t.Fatal(err)
	}
	inj := &faults.Injector{Next: srv}
	// The first GET of the layer sends 12 MiB and then nothing.
	inj.Add(faults.Rule{Method: http.MethodGet, Path: "/blobs/" + string(layer.Digest), Times: 1, Fault: faults.StallAfter(12<<20, time.Hour)})
	var ranges atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			ranges.Add(1)
		}
		inj.ServeHTTP(w, r)
	}))
	defer ts.Close()
	host := ts.Listener.Addr().String()
	dir := filepath.Join(t.TempDir(), "layout")
	partial := filepath.Join(dir, "blobs", "sha256", layer.Digest.Encoded()+".partial")

	cmd := exec.Command(os.Args[0], "pull", host+"/app/big:v1", dir)
	cmd.Env = append(os.Environ(), "OCIPULL_TEST_MAIN=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Kill once the landing holds more than the pipeline's first 8 MiB.
	for landed := false; !landed; {
		select {
		case err := <-exited:
			t.Fatalf("the pull ended before it was killed: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		st, err := os.Stat(partial)
		landed = err == nil && st.Size() >= 9<<20
	}
	cmd.Process.Kill()
	<-exited

	code, _, errs := runCmd(t, "", "pull", host+"/app/big:v1", dir)
	if code != 0 {
		t.Fatalf("the second pull: exit %d: %s", code, errs)
	}
	if n := ranges.Load(); n != 1 {
		t.Errorf("%d Range requests, want 1 (the resumption)", n)
	}
	l, err := oci.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(l.BlobPath(layer.Digest))
	if err != nil || string(b) != string(content) {
		t.Fatalf("the layer on disk is not its content (%d bytes, %v)", len(b), err)
	}
	if _, err := os.Stat(partial); err == nil {
		t.Error("a partial file is left")
	}
	if _, err := l.Read(context.Background(), "v1"); err != nil {
		t.Errorf("the layout: %v", err)
	}
}
