package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	ggcrlayout "github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2"
	orasoci "oras.land/oras-go/v2/content/oci"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// loadgen makes b.N GETs of path over conns keep-alive HTTP/1.1
// connections to addr (127.0.0.1 only) and reports requests per second. It
// speaks HTTP on raw sockets — write a request, read the status line and
// headers, skip Content-Length bytes — so that the load generator, which
// shares the machine's two cores with the server, costs as little as it
// can and the server's own cost shows in the ratios.
func loadgen(b *testing.B, url, path string, conns int) {
	b.Helper()
	b.ResetTimer()
	el, err := loadSlice(url, path, conns, b.N)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "req/s")
}

// loadSlice makes n GETs of path over conns keep-alive connections to url
// (127.0.0.1 only) and returns how long they took.
func loadSlice(url, path string, conns, n int) (time.Duration, error) {
	addr := strings.TrimPrefix(url, "http://")
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		return 0, fmt.Errorf("load generator only targets 127.0.0.1, not %s", addr)
	}
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: ocipull-loadgen\r\n\r\n")
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				failed.Store(err)
				return
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 64<<10)
			for next.Add(1) <= int64(n) {
				if _, err := conn.Write(req); err != nil {
					failed.Store(err)
					return
				}
				if err := readResponse(br); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		return 0, err
	}
	return el, nil
}

// readResponse reads one HTTP/1.1 response with a Content-Length body and
// checks that its status is 200.
func readResponse(br *bufio.Reader) error {
	status, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", status)
	}
	length := int64(-1)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			length, err = strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return err
			}
		}
	}
	if length < 0 {
		return fmt.Errorf("response without Content-Length")
	}
	_, err = br.Discard(int(length))
	return err
}

// BenchmarkServers measures GET manifest by tag and GET 4 KiB blob with 32
// keep-alive connections against our Server, go-containerregistry's
// pkg/registry and the reference registry (in-memory storage), all serving
// the same pushed image.
func BenchmarkServers(b *testing.B) {
	servers, ld := benchServers(b)
	// handler-only: the server's own cost per request, without the network
	// and the load generator that share the machine's two cores.
	for _, what := range []struct{ name, path string }{
		{"manifest-by-tag", "/v2/bench/img/manifests/v1"},
		{"blob-4KiB", "/v2/bench/img/blobs/" + ld},
	} {
		for _, s := range servers {
			b.Run("handler-only/"+what.name+"/"+s.name, func(b *testing.B) {
				h := s.ts.Config.Handler
				w := &discardWriter{h: http.Header{}}
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					req := httptest.NewRequest(http.MethodGet, what.path, nil)
					clear(w.h)
					w.status = 0
					h.ServeHTTP(w, req)
					if w.status != 0 && w.status != 200 {
						b.Fatalf("status %d", w.status)
					}
				}
			})
		}
	}
	for _, what := range []struct{ name, path string }{
		{"manifest-by-tag", "/v2/bench/img/manifests/v1"},
		{"blob-4KiB", "/v2/bench/img/blobs/" + ld},
	} {
		for _, s := range servers {
			b.Run(what.name+"/"+s.name, func(b *testing.B) {
				b.ReportAllocs()
				loadgen(b, s.ts.URL, what.path, 32)
			})
		}
	}
}

// benchServer is one server under load.
type benchServer struct {
	name string
	ts   *httptest.Server
}

// benchServers starts our Server, go-containerregistry's pkg/registry and
// the reference registry (in-memory storage), all serving the same pushed
// image, and returns them with the digest of the image's 4 KiB layer.
func benchServers(b *testing.B) ([]benchServer, string) {
	img, err := random.Image(4096, 1)
	if err != nil {
		b.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()

	ggcrTS := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	b.Cleanup(ggcrTS.Close)
	cfg := &configuration.Configuration{}
	cfg.Storage = configuration.Storage{"inmemory": configuration.Parameters{}}
	distTS := httptest.NewServer(handlers.NewApp(context.Background(), cfg))
	b.Cleanup(distTS.Close)
	for _, ts := range []*httptest.Server{ggcrTS, distTS} {
		ref, _ := name.ParseReference(hostOf(b, ts)+"/bench/img:v1", name.Insecure)
		if err := remote.Write(ref, img, remote.WithAuth(authn.Anonymous)); err != nil {
			b.Fatal(err)
		}
	}
	// Ours serves the same image from memory: read it with our client and
	// copy manifests and blobs into an oci.Memory.
	ctx := context.Background()
	c := (&registry.Registry{Scheme: "http", Host: hostOf(b, ggcrTS)}).Repository("bench/img")
	ref, err := c.Read(ctx, "v1")
	if err != nil {
		b.Fatal(err)
	}
	mem := oci.NewMemory()
	mem.Add(ref.Descriptor().MediaType, ref.RawManifest())
	for _, d := range ref.(*oci.Image).Blobs() {
		raw, err := ref.(*oci.Image).ReadBlob(context.Background(), d, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		mem.Add(d.MediaType, raw)
	}
	local, err := oci.LoadRef(ctx, mem, ref.Descriptor())
	if err != nil {
		b.Fatal(err)
	}
	srv := registry.NewServer()
	if err := srv.AddRef("bench/img", "v1", local); err != nil {
		b.Fatal(err)
	}
	oursTS := httptest.NewServer(srv)
	b.Cleanup(oursTS.Close)

	return []benchServer{{"ocipull", oursTS}, {"ggcr", ggcrTS}, {"distribution", distTS}}, ld.String()
}

// BenchmarkServersInterleaved compares the servers of BenchmarkServers in
// short alternating slices: each round (each b.N) sends every server, in
// an order rotated every round, 2,000 GETs over 32 keep-alive connections
// of each kind (manifest by tag, 4 KiB blob), so that a machine whose
// speed drifts cannot favour one. Reports each server's median requests
// per second per kind and ours over each other's (above 1: ours faster).
func BenchmarkServersInterleaved(b *testing.B) {
	servers, ld := benchServers(b)
	kinds := []struct{ name, path string }{
		{"manifest-by-tag", "/v2/bench/img/manifests/v1"},
		{"blob-4KiB", "/v2/bench/img/blobs/" + ld},
	}
	const slice, conns = 2000, 32
	rates := map[string][]float64{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range servers {
			s := servers[(i+j)%len(servers)]
			for _, k := range kinds {
				el, err := loadSlice(s.ts.URL, k.path, conns, slice)
				if err != nil {
					b.Fatalf("%s %s: %v", s.name, k.name, err)
				}
				rates[k.name+"/"+s.name] = append(rates[k.name+"/"+s.name], slice/el.Seconds())
			}
		}
	}
	b.StopTimer()
	med := func(v []float64) float64 {
		v = append([]float64(nil), v...)
		sort.Float64s(v)
		return v[len(v)/2]
	}
	for _, k := range kinds {
		ours := med(rates[k.name+"/ocipull"])
		for _, s := range servers {
			m := med(rates[k.name+"/"+s.name])
			b.ReportMetric(m, k.name+"-"+s.name+"-req/s")
			if s.name != "ocipull" {
				b.ReportMetric(ours/m, k.name+"-ocipull/"+s.name)
			}
		}
	}
}

// BenchmarkServeLargeBlob serves one large blob to one client draining it:
// our Server from memory and from a layout on disk, beside a bare
// http.ServeContent handler over the same bytes and the same file.
func BenchmarkServeLargeBlob(b *testing.B) {
	size := benchBlobMiB() << 20
	f := newImageFixture(b, size)
	layer := f.layers[0]
	ctx := context.Background()
	dir := b.TempDir()
	l, err := oci.CreateLayout(dir)
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Write(ctx, "v1", f.img, nil); err != nil {
		b.Fatal(err)
	}
	layoutRef, err := l.Read(ctx, "v1")
	if err != nil {
		b.Fatal(err)
	}
	fromDisk := registry.NewServer()
	if err := fromDisk.AddRef("bench/img", "v1", layoutRef); err != nil {
		b.Fatal(err)
	}
	diskTS := httptest.NewServer(fromDisk)
	defer diskTS.Close()
	rc, _ := f.img.Source().Blob(ctx, layer)
	data, _ := io.ReadAll(rc)
	bareMem := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer bareMem.Close()
	path := l.BlobPath(layer.Digest)
	bareFile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fh, err := os.Open(path)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer fh.Close()
		http.ServeContent(w, r, "", time.Time{}, fh)
	}))
	defer bareFile.Close()
	blobPath := "/v2/bench/img/blobs/" + string(layer.Digest)
	for _, s := range []struct{ name, url string }{
		{"bare-ServeContent-memory", bareMem.URL + blobPath},
		{"ocipull-memory", f.ts.URL + blobPath},
		{"bare-ServeContent-file", bareFile.URL + blobPath},
		{"ocipull-layout-file", diskTS.URL + blobPath},
	} {
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			buf := make([]byte, 1<<20)
			for i := 0; i < b.N; i++ {
				resp, err := http.Get(s.url)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf)
				resp.Body.Close()
				if n != size {
					b.Fatalf("got %d bytes", n)
				}
			}
		})
	}
}

// BenchmarkPullCommand runs the ocipull binary to pull the large image into
// a layout on disk and reports its throughput and peak RSS, beside the
// limit measured in the same run: a raw GET hashed through a 1 MiB buffer,
// into io.Discard and into a new file on the same filesystem.
func BenchmarkPullCommand(b *testing.B) {
	size := benchBlobMiB() << 20
	f := newImageFixture(b, size)
	layer := f.layers[0]
	blobURL := f.ts.URL + "/v2/bench/img/blobs/" + string(layer.Digest)
	bin := filepath.Join(b.TempDir(), "ocipull")
	build := exec.Command("go", "build", "-o", bin, "github.com/ocipull/registry/cmd/ocipull")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	rawGet := func(b *testing.B, w io.Writer, buf []byte) {
		resp, err := http.Get(blobURL)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		if _, err := io.CopyBuffer(io.MultiWriter(h, w), struct{ io.Reader }{resp.Body}, buf); err != nil {
			b.Fatal(err)
		}
		if digest.NewDigest(digest.SHA256, h) != layer.Digest {
			b.Fatal("digest mismatch")
		}
	}
	// Each measurement starts with no dirty pages left by the one before
	// (a gigabyte written back while the next runs would be timed with it).
	settle := func(b *testing.B) {
		b.StopTimer()
		syscall.Sync()
		b.StartTimer()
	}
	b.Run("limit-raw-get-sha256-1MiB/discard", func(b *testing.B) {
		b.SetBytes(size)
		buf := make([]byte, 1<<20)
		for i := 0; i < b.N; i++ {
			settle(b)
			rawGet(b, io.Discard, buf)
		}
	})
	b.Run("limit-raw-get-sha256-1MiB/new-file", func(b *testing.B) {
		b.SetBytes(size)
		buf := make([]byte, 1<<20)
		for i := 0; i < b.N; i++ {
			settle(b)
			path := filepath.Join(b.TempDir(), "blob")
			out, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			rawGet(b, out, buf)
			if err := out.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.Remove(path)
			b.StartTimer()
		}
	})
	// The peers' own ways of pulling an image into an OCI layout on disk,
	// in-process: go-containerregistry's layout.Write of remote.Image, and
	// oras-go's oras.Copy into its oci.Store.
	b.Run("ggcr-layout-write", func(b *testing.B) {
		b.SetBytes(size)
		ref, _ := name.ParseReference(f.host+"/bench/img:v1", name.Insecure)
		for i := 0; i < b.N; i++ {
			settle(b)
			dir := filepath.Join(b.TempDir(), "layout")
			img, err := remote.Image(ref)
			if err != nil {
				b.Fatal(err)
			}
			p, err := ggcrlayout.Write(dir, empty.Index)
			if err != nil {
				b.Fatal(err)
			}
			if err := p.AppendImage(img); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.RemoveAll(dir)
			b.StartTimer()
		}
	})
	b.Run("oras-copy-oci-store", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			settle(b)
			dir := filepath.Join(b.TempDir(), "layout")
			repo, _ := orasremote.NewRepository(f.host + "/bench/img")
			repo.PlainHTTP = true
			store, err := orasoci.New(dir)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := oras.Copy(context.Background(), repo, "v1", store, "v1", oras.DefaultCopyOptions); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.RemoveAll(dir)
			b.StartTimer()
		}
	})
	b.Run("ocipull-pull", func(b *testing.B) {
		b.SetBytes(size)
		var maxRSS int64
		for i := 0; i < b.N; i++ {
			settle(b)
			dir := filepath.Join(b.TempDir(), "layout")
			cmd := exec.Command(bin, "pull", "--quiet", f.host+"/bench/img:v1", dir)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			// The child's own peak RSS, polled from /proc: rusage's
			// maxrss would also count the benchmark's memory, shared
			// with the child between its fork and its exec.
			done := make(chan struct{})
			var peak atomic.Int64
			go func() {
				status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
				for {
					select {
					case <-done:
						return
					case <-time.After(5 * time.Millisecond):
					}
					if kb := vmHWM(status); kb > peak.Load() {
						peak.Store(kb)
					}
				}
			}()
			err := cmd.Wait()
			close(done)
			if err != nil {
				b.Fatalf("%v\n%s", err, out.String())
			}
			if p := peak.Load(); p > maxRSS {
				maxRSS = p
			}
			b.StopTimer()
			os.RemoveAll(dir)
			b.StartTimer()
		}
		b.ReportMetric(float64(maxRSS)/1024, "peakRSS-MiB")
	})
}

// vmHWM reads the peak resident set size (kB) from /proc/<pid>/status, or 0.
func vmHWM(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// discardWriter is a ResponseWriter that keeps headers and status and drops
// the body.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
