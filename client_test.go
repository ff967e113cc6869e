package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

// fixture is a server holding one image (tag "img") and one 3-platform
// index (tag "multi") in repository "test/repo", behind a fault injector.
type fixture struct {
	mem *oci.Memory
	srv *registry.Server
	inj *faults.Injector
	img *oci.Image
	idx *oci.Index
	c   *registry.Client
}

func newFixture(t *testing.T, layerSizes ...int) *fixture {
	t.Helper()
	if len(layerSizes) == 0 {
		layerSizes = []int{10_000, 200_000}
	}
	f := &fixture{mem: oci.NewMemory(), srv: registry.NewServer()}
	f.img = newImage(t, f.mem, linuxAMD64, layerSizes...)
	f.idx = newIndex(t, f.mem)
	mustAdd(t, f.srv, "test/repo", "img", f.img)
	mustAdd(t, f.srv, "test/repo", "multi", f.idx)
	f.inj = &faults.Injector{Next: f.srv}
	f.c = clientFor(t, serve(t, f.inj), "test/repo")
	return f
}

func readAll(t *testing.T, img *oci.Image, d v1.Descriptor) ([]byte, error) {
	t.Helper()
	rc, err := img.OpenBlob(context.Background(), d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestReadByTagDigestAndBoth(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	want := f.img.Digest()
	for _, tc := range []struct{ name, tag, dgst string }{
		{"tag", "img", ""},
		{"digest", "", string(want)},
		{"both", "img", string(want)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref, err := f.c.Read(ctx, joinRef(tc.tag, tc.dgst))
			if err != nil {
				t.Fatal(err)
			}
			if ref.Digest() != want {
				t.Errorf("digest: got %s, want %s", ref.Digest(), want)
			}
			if !bytes.Equal(ref.RawManifest(), f.img.RawManifest()) {
				t.Error("raw manifest differs from what was served")
			}
			img, ok := ref.(*oci.Image)
			if !ok {
				t.Fatalf("got %T, want *oci.Image", ref)
			}
			for _, l := range img.Layers() {
				got, err := readAll(t, img, l)
				if err != nil {
					t.Fatal(err)
				}
				orig, _ := f.mem.Blob(ctx, l)
				wantBytes, _ := io.ReadAll(orig)
				if !bytes.Equal(got, wantBytes) {
					t.Errorf("layer %s: bytes differ", l.Digest)
				}
			}
			cfg, err := img.ReadConfig(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OS != "linux" || cfg.Architecture != "amd64" {
				t.Errorf("config platform: got %s/%s", cfg.OS, cfg.Architecture)
			}
		})
	}
}

func TestReadIsLazy(t *testing.T) {
	f := newFixture(t)
	ref, err := f.c.Read(context.Background(), "multi")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.inj.Requests(); got != 1 {
		t.Errorf("requests after Read: got %d, want 1", got)
	}
	idx := ref.(*oci.Index)
	d, err := idx.SelectPlatform(linuxARM64)
	if err != nil {
		t.Fatal(err)
	}
	child, err := idx.Child(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.inj.Requests(); got != 2 {
		t.Errorf("requests after Child: got %d, want 2", got)
	}
	if got := f.inj.RequestsTo("/blobs/"); got != 0 {
		t.Errorf("blob requests: got %d, want 0", got)
	}
	if _, err := child.(*oci.Image).ReadConfig(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestReadErrors(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	other := digest.FromString("nope")
	for _, tc := range []struct {
		name     string
		repo     string
		tag      string
		dgst     string
		want     error
		requests int
	}{
		{"unknown tag", "test/repo", "missing", "", registry.ErrManifestUnknown, 1},
		{"unknown digest", "test/repo", "", string(other), registry.ErrNotFound, 1},
		{"unknown repo", "no/such", "img", "", registry.ErrNameUnknown, 1},
		{"tag with wrong digest", "test/repo", "img", string(other), oci.ErrDigestMismatch, 1},
		{"invalid repo", "Bad/Repo", "img", "", registry.ErrInvalidReference, 0},
		{"invalid tag", "test/repo", "-bad", "", registry.ErrInvalidReference, 0},
		{"invalid digest", "test/repo", "", "sha256:abc", registry.ErrInvalidReference, 0},
		{"unregistered algorithm", "test/repo", "", "md5:d41d8cd98f00b204e9800998ecf8427e", registry.ErrInvalidReference, 0},
		{"nothing", "test/repo", "", "", registry.ErrInvalidReference, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.inj.Reset()
			c := (&registry.Registry{Scheme: f.c.Registry().Scheme, Host: f.c.Registry().Host, Transport: f.c.Registry().Transport, GetBackOff: f.c.Registry().GetBackOff}).Repository(tc.repo)
			_, err := c.Read(ctx, joinRef(tc.tag, tc.dgst))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if got := f.inj.Requests(); got != tc.requests {
				t.Errorf("requests: got %d, want %d", got, tc.requests)
			}
			t.Logf("error: %v", err)
		})
	}
}

func TestInvalidHost(t *testing.T) {
	for _, h := range []string{"", "a/b", "user@host", "host:0", "host:99999", "[::1", "host:", "-bad.com", "a..b", "host?x"} {
		c := (&registry.Registry{Host: h}).Repository("a")
		if _, err := c.Read(context.Background(), "t"); !errors.Is(err, registry.ErrInvalidReference) {
			t.Errorf("host %q: got %v, want ErrInvalidReference", h, err)
		}
	}
}

// hostile serves a fixed response for every manifest request.
func hostile(t *testing.T, fn http.HandlerFunc) *registry.Client {
	t.Helper()
	return clientFor(t, serve(t, fn), "test/repo")
}

func TestHostileManifests(t *testing.T) {
	good := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	goodDigest := digest.FromBytes(good)
	big := append([]byte(`{"schemaVersion":2,"x":"`), bytes.Repeat([]byte("a"), oci.MaxManifestSize)...)
	big = append(big, `"}`...)
	for _, tc := range []struct {
		name        string
		contentType string
		body        []byte
		header      map[string]string
		dgst        string
		want        error
	}{
		{"wrong bytes for digest", v1.MediaTypeImageManifest, append([]byte(" "), good...), nil, string(goodDigest), oci.ErrDigestMismatch},
		{"lying Docker-Content-Digest", v1.MediaTypeImageManifest, good, map[string]string{"Docker-Content-Digest": string(digest.FromString("x"))}, "", oci.ErrDigestMismatch},
		{"oversized", v1.MediaTypeImageManifest, big, nil, "", oci.ErrTooLarge},
		{"schema 1", "application/vnd.docker.distribution.manifest.v1+prettyjws", []byte(`{"schemaVersion":1,"fsLayers":[]}`), nil, "", oci.ErrUnsupportedMediaType},
		{"schema 1 as json", "application/json", []byte(`{"schemaVersion":1,"fsLayers":[]}`), nil, "", oci.ErrUnsupportedMediaType},
		{"not json", v1.MediaTypeImageManifest, []byte(`<html>`), nil, "", oci.ErrInvalidManifest},
		{"contradicting media types", v1.MediaTypeImageIndex, good, nil, "", oci.ErrInvalidManifest},
		{"unknown media type", "text/html", good, nil, "", oci.ErrUnsupportedMediaType},
		{"generic type, unknown body type", "application/octet-stream", bytes.Replace(good, []byte(`"mediaType":"application/vnd.oci.image.manifest.v1+json"`), []byte(`"mediaType":"application/vnd.example.thing+json"`), 1), nil, "", oci.ErrUnsupportedMediaType},
		{"negative size", v1.MediaTypeImageManifest, bytes.Replace(good, []byte(`"size":2`), []byte(`"size":-2`), 1), nil, "", oci.ErrInvalidDescriptor},
		{"bad descriptor digest", v1.MediaTypeImageManifest, bytes.Replace(good, []byte(`sha256:4413`), []byte(`sha256:XX13`), 1), nil, "", oci.ErrInvalidDescriptor},
		{"schemaVersion 3", v1.MediaTypeImageManifest, bytes.Replace(good, []byte(`"schemaVersion":2`), []byte(`"schemaVersion":3`), 1), nil, "", oci.ErrInvalidManifest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := hostile(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.Write(tc.body)
			})
			_, err := c.Read(context.Background(), joinRef("t", tc.dgst))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestContentTypeFallback(t *testing.T) {
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	for _, ct := range []string{"application/json", "", "application/vnd.oci.image.index.v1+json; charset=utf-8", "application/vnd.oci.image.index.v1+json",
		"text/plain; charset=utf-8", "application/octet-stream", "application/json; charset=utf-8"} {
		c := hostile(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = []string{ct}
			w.Write(body)
		})
		ref, err := c.Read(context.Background(), "t")
		if err != nil {
			t.Fatalf("Content-Type %q: %v", ct, err)
		}
		if ref.Descriptor().MediaType != v1.MediaTypeImageIndex {
			t.Errorf("Content-Type %q: media type %q", ct, ref.Descriptor().MediaType)
		}
	}
}

func TestRequestHeaders(t *testing.T) {
	f := newFixture(t)
	var accept, enc, ua atomic.Value
	f.inj.Add(faults.Rule{Path: "/manifests/", Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		accept.Store(r.Header.Get("Accept"))
		enc.Store(r.Header.Get("Accept-Encoding"))
		ua.Store(r.Header.Get("User-Agent"))
		next.ServeHTTP(w, r)
	})})
	f.c.Registry().UserAgent = "test-agent/1"
	if _, err := f.c.Read(context.Background(), "img"); err != nil {
		t.Fatal(err)
	}
	for _, mt := range oci.ManifestMediaTypes() {
		if !strings.Contains(accept.Load().(string), mt) {
			t.Errorf("Accept %q lacks %s", accept.Load(), mt)
		}
	}
	if got := enc.Load(); got != "identity" {
		t.Errorf("Accept-Encoding: got %q, want identity", got)
	}
	if got := ua.Load(); got != "test-agent/1" {
		t.Errorf("User-Agent: got %q", got)
	}
}

func TestBlobFaults(t *testing.T) {
	const size = 300_000
	for _, tc := range []struct {
		name  string
		rules []faults.Rule
		want  error // nil: the read completes with the right bytes
	}{
		{"cut mid-blob resumes", []faults.Rule{{Path: "/blobs/", Times: 2, Fault: faults.CutAfter(100_000)}}, nil},
		{"stall mid-blob resumes", []faults.Rule{{Path: "/blobs/", Times: 1, Fault: faults.StallAfter(50_000, 5*time.Second)}}, nil},
		{"stall before headers retries", []faults.Rule{{Path: "/blobs/", Times: 1, Fault: faults.Stall(5 * time.Second)}}, nil},
		{"ignored range skips the prefix", []faults.Rule{
			{Path: "/blobs/", Nth: 1, Fault: faults.CutAfter(100_000)},
			{Path: "/blobs/", Nth: 2, Fault: faults.IgnoreRange()},
		}, nil},
		{"503 with Retry-After", []faults.Rule{{Path: "/blobs/", Times: 2, Fault: faults.Status(503, "0")}}, nil},
		{"429", []faults.Rule{{Path: "/blobs/", Times: 1, Fault: faults.Status(429, "")}}, nil},
		{"short Content-Length is refused", []faults.Rule{{Path: "/blobs/", Times: 1, Fault: faults.LieContentLength(-1000)}}, oci.ErrSizeMismatch},
		{"long Content-Length is refused", []faults.Rule{{Path: "/blobs/", Times: 1, Fault: faults.LieContentLength(+1000)}}, oci.ErrSizeMismatch},
		{"wrong bytes", []faults.Rule{{Path: "/blobs/", Fault: faults.Corrupt()}}, oci.ErrDigestMismatch},
		{"wrong Content-Range", []faults.Rule{
			{Path: "/blobs/", Nth: 1, Fault: faults.CutAfter(100_000)},
			{Path: "/blobs/", Fault: faults.WrongContentRange()},
		}, registry.ErrProtocol},
		{"oversized body", []faults.Rule{{Path: "/blobs/", Fault: faults.Oversize(1 << 20)}}, nil},
		{"404", []faults.Rule{{Path: "/blobs/", Fault: faults.Status(404, "")}}, registry.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, size)
			f.c.Registry().StallTimeout = 200 * time.Millisecond
			for _, r := range tc.rules {
				f.inj.Add(r)
			}
			ref, err := f.c.Read(context.Background(), "img")
			if err != nil {
				t.Fatal(err)
			}
			img := ref.(*oci.Image)
			layer := img.Layers()[0]
			start := time.Now()
			got, err := readAll(t, img, layer)
			t.Logf("%d requests, %v, err=%v", f.inj.Requests(), time.Since(start), err)
			switch {
			case tc.want == nil:
				if err != nil {
					t.Fatal(err)
				}
				if digest.FromBytes(got) != layer.Digest || int64(len(got)) != layer.Size {
					t.Fatal("bytes do not match the layer")
				}
			default:
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				if int64(len(got)) == layer.Size {
					t.Fatal("a failed read delivered the full size")
				}
			}
		})
	}
}

func TestPersistent500GivesUp(t *testing.T) {
	f := newFixture(t, 300_000)
	f.inj.Add(faults.Rule{Path: "/blobs/", Fault: faults.Status(500, "")})
	ref, err := f.c.Read(context.Background(), "img")
	if err != nil {
		t.Fatal(err)
	}
	img := ref.(*oci.Image)
	_, err = readAll(t, img, img.Layers()[0])
	var ce *registry.ClientError
	if !errors.As(err, &ce) || ce.StatusCode != 500 {
		t.Fatalf("got %v, want a 500 ClientError", err)
	}
	if n := f.inj.RequestsTo("/blobs/"); n != 6 {
		t.Errorf("blob requests: got %d, want 6 (1 + 5 retries)", n)
	}
}

func TestRetryAfterBeyondDeadline(t *testing.T) {
	f := newFixture(t)
	f.inj.Add(faults.Rule{Path: "/manifests/", Fault: faults.Status(429, "30")})
	// Waiting would take the whole 10 s; giving up at once takes
	// milliseconds (5 s leaves room for a busy machine).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := f.c.Read(ctx, "img")
	if !errors.Is(err, registry.ErrTooManyRequests) {
		t.Fatalf("got %v, want ErrTooManyRequests", err)
	}
	var ce *registry.ClientError
	if !errors.As(err, &ce) || ce.RetryAfter != 30*time.Second {
		t.Errorf("RetryAfter: got %v", ce)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v: should give up at once when Retry-After passes the deadline", d)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	f := newFixture(t)
	f.inj.Add(faults.Rule{Path: "/manifests/", Times: 1, Fault: faults.Status(503, "1")})
	var waits []time.Duration
	f.c.Registry().RetryNotify = func(err error, d time.Duration) { waits = append(waits, d) }
	if _, err := f.c.Read(context.Background(), "img"); err != nil {
		t.Fatal(err)
	}
	if len(waits) != 1 || waits[0] < time.Second {
		t.Errorf("waits: got %v, want one of at least 1s", waits)
	}
}

func TestRetriesOff(t *testing.T) {
	f := newFixture(t)
	f.c.Registry().GetBackOff = func() backoff.BackOff { return &backoff.StopBackOff{} }
	f.inj.Add(faults.Rule{Path: "/manifests/", Fault: faults.Status(503, "")})
	if _, err := f.c.Read(context.Background(), "img"); err == nil {
		t.Fatal("want an error")
	}
	if n := f.inj.Requests(); n != 1 {
		t.Errorf("requests: got %d, want 1", n)
	}
}

func TestNoRetryOn4xx(t *testing.T) {
	f := newFixture(t)
	f.inj.Add(faults.Rule{Path: "/manifests/", Fault: faults.Status(400, "")})
	_, err := f.c.Read(context.Background(), "img")
	var ce *registry.ClientError
	if !errors.As(err, &ce) || ce.StatusCode != 400 {
		t.Fatalf("got %v", err)
	}
	if n := f.inj.Requests(); n != 1 {
		t.Errorf("requests: got %d, want 1", n)
	}
}

func TestRedactedErrors(t *testing.T) {
	ts2 := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "denied", http.StatusForbidden)
	}))
	f := newFixture(t)
	f.inj.Add(faults.Rule{Path: "/blobs/", Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		http.Redirect(w, r, ts2.URL+"/bucket/blob?X-Amz-Signature=secret123&X-Amz-Credential=AKIA", http.StatusTemporaryRedirect)
	})})
	ref, err := f.c.Read(context.Background(), "img")
	if err != nil {
		t.Fatal(err)
	}
	_, err = readAll(t, ref.(*oci.Image), ref.(*oci.Image).Layers()[0])
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), "secret123") || strings.Contains(err.Error(), "AKIA") {
		t.Errorf("error leaks a signed parameter: %v", err)
	}
	if !errors.Is(err, registry.ErrDenied) {
		t.Errorf("got %v, want ErrDenied", err)
	}
}

func TestRedirectLoop(t *testing.T) {
	c := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Path, http.StatusFound)
	})
	_, err := c.Read(context.Background(), "t")
	if !errors.Is(err, registry.ErrProtocol) {
		t.Fatalf("got %v, want ErrProtocol", err)
	}
}

func TestContextCancelStopsRead(t *testing.T) {
	f := newFixture(t, 1<<20)
	f.inj.Add(faults.Rule{Path: "/blobs/", Fault: faults.StallAfter(1000, 10*time.Second)})
	ctx, cancel := context.WithCancel(context.Background())
	ref, err := f.c.Read(ctx, "img")
	if err != nil {
		t.Fatal(err)
	}
	img := ref.(*oci.Image)
	rc, err := img.OpenBlob(ctx, img.Layers()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = io.Copy(io.Discard, rc)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second { // the stall is 10 s
		t.Errorf("cancel took %v", d)
	}
}

func TestDockerSchema2(t *testing.T) {
	mem := oci.NewMemory()
	cfg := mem.Add(oci.MediaTypeDockerConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	layer := mem.Add(oci.MediaTypeDockerLayer, randomBytes(t, 5000))
	img, err := mem.NewImage(v1.Manifest{MediaType: oci.MediaTypeDockerManifest, Config: cfg, Layers: []v1.Descriptor{layer}})
	if err != nil {
		t.Fatal(err)
	}
	d := img.Descriptor()
	d.Platform = &linuxAMD64
	list, err := mem.NewIndex(v1.Index{MediaType: oci.MediaTypeDockerManifestList, Manifests: []v1.Descriptor{d}})
	if err != nil {
		t.Fatal(err)
	}
	srv := registry.NewServer()
	mustAdd(t, srv, "docker/img", "latest", list)
	c := clientFor(t, serve(t, srv), "docker/img")
	ref, err := c.Read(context.Background(), "latest")
	if err != nil {
		t.Fatal(err)
	}
	if ref.Descriptor().MediaType != oci.MediaTypeDockerManifestList {
		t.Errorf("media type: got %s", ref.Descriptor().MediaType)
	}
	got, err := oci.ImageForPlatform(context.Background(), ref, linuxAMD64)
	if err != nil {
		t.Fatal(err)
	}
	if got.Descriptor().MediaType != oci.MediaTypeDockerManifest || got.Digest() != img.Digest() {
		t.Errorf("got %s %s", got.Descriptor().MediaType, got.Digest())
	}
	b, err := readAll(t, got, layer)
	if err != nil || digest.FromBytes(b) != layer.Digest {
		t.Fatalf("layer: %v", err)
	}
}

func TestConcurrentReads(t *testing.T) {
	f := newFixture(t, 50_000, 50_000, 50_000, 50_000)
	ref, err := f.c.Read(context.Background(), "img")
	if err != nil {
		t.Fatal(err)
	}
	img := ref.(*oci.Image)
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		go func(i int) {
			l := img.Layers()[i%4]
			b, err := readAll(t, img, l)
			if err == nil && digest.FromBytes(b) != l.Digest {
				err = fmt.Errorf("layer %d: wrong bytes", i)
			}
			errs <- err
		}(i)
	}
	for i := 0; i < 32; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// A Client's Source used before any other call (as a cache's first fetch
// after a restart may) works: the registry handle starts itself.
func TestSourceFirstUse(t *testing.T) {
	img := newImage(t, oci.NewMemory(), linuxAMD64, 1000)
	srv := registry.NewServer()
	mustAdd(t, srv, "team/app", "v1", img)
	ts := serve(t, srv)
	c := clientFor(t, ts, "team/app")
	rc, err := c.Source().Blob(context.Background(), img.Layers()[0])
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	bad := (&registry.Registry{Host: "bad host"}).Repository("team/app")
	if _, err := bad.Source().Manifest(context.Background(), img.Descriptor()); !errors.Is(err, registry.ErrInvalidReference) {
		t.Errorf("an invalid host: %v, want ErrInvalidReference", err)
	}
}
