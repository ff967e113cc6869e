package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

func TestResolveAndExists(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d, err := f.c.Resolve(ctx, "img")
	if err != nil {
		t.Fatal(err)
	}
	if d.Digest != f.img.Digest() || d.MediaType != v1.MediaTypeImageManifest || d.Size != int64(len(f.img.RawManifest())) {
		t.Errorf("got %+v", d)
	}
	if n := f.inj.RequestsTo("HEAD /v2/"); n != 1 || f.inj.Requests() != 1 {
		t.Errorf("requests: %d (HEAD %d), want 1 HEAD", f.inj.Requests(), n)
	}
	// Without Docker-Content-Digest on HEAD, one GET follows.
	f.inj.Reset()
	f.inj.Add(faults.Rule{Method: http.MethodHead, Fault: faults.DropHeader("Docker-Content-Digest")})
	d2, err := f.c.Resolve(ctx, "img")
	if err != nil || d2.Digest != d.Digest {
		t.Fatalf("fallback: %+v, %v", d2, err)
	}
	if f.inj.RequestsTo("GET /v2/") != 1 {
		t.Errorf("want one GET after a HEAD without digest")
	}
	for _, tc := range []struct {
		ref  string
		want bool
	}{{"img", true}, {"nope", false}, {string(f.img.Digest()), true}, {string(oci.NewMemory().Add("x", []byte("x")).Digest), false}} {
		_, err := f.c.Resolve(ctx, tc.ref)
		if ok := err == nil; ok != tc.want || err != nil && !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("Resolve(%s): got %v; want found %v", tc.ref, err, tc.want)
		}
	}
	f.inj.Add(faults.Rule{Fault: faults.Status(401, "")})
	if _, err := f.c.Resolve(ctx, "img"); !errors.Is(err, registry.ErrUnauthorized) || errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Resolve with 401: got %v, want ErrUnauthorized", err)
	}
}

func TestTagsPagination(t *testing.T) {
	mem := oci.NewMemory()
	img := newImage(t, mem, linuxAMD64, 10)
	s := registry.NewServer()
	var want []string
	for i := 0; i < 25; i++ {
		tag := fmt.Sprintf("t%02d", i)
		want = append(want, tag)
		mustAdd(t, s, "a/b", tag, img)
		mustAdd(t, s, fmt.Sprintf("repo%02d", i), "x", img)
	}
	inj := &faults.Injector{Next: s}
	c := clientFor(t, serve(t, inj), "a/b")
	ctx := context.Background()
	var got []string
	for tag, err := range c.ListTags(ctx, 10) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, tag)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if n := inj.Requests(); n != 3 {
		t.Errorf("pages: got %d, want 3", n)
	}
	inj.Reset()
	for tag, err := range c.ListTags(ctx, 10) {
		if err != nil || tag == "t03" {
			break
		}
	}
	if n := inj.Requests(); n != 1 {
		t.Errorf("early stop fetched %d pages, want 1", n)
	}
	repos, err := c.Registry().Repositories(ctx)
	if err != nil || len(repos) != 26 {
		t.Errorf("catalog: %d repositories, %v", len(repos), err)
	}
	var paged []string
	for r, err := range c.Registry().ListRepositories(ctx, 7) {
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, r)
	}
	if fmt.Sprint(paged) != fmt.Sprint(repos) {
		t.Errorf("paged catalog differs")
	}
}

func TestMalformedLinkIsAnError(t *testing.T) {
	c := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", `</v2/x/tags/list?n=1&last=a; rel="next"`)
		w.Write([]byte(`{"name":"x","tags":["a"]}`))
	})
	_, err := c.Tags(context.Background())
	if !errors.Is(err, registry.ErrProtocol) {
		t.Fatalf("got %v, want ErrProtocol", err)
	}
}

func TestAbsoluteLinkAndLoop(t *testing.T) {
	var base string
	c := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("last") == "" {
			w.Header().Set("Link", `<`+base+`/v2/test/repo/tags/list?n=1&last=a>; rel="next"`)
			w.Write([]byte(`{"tags":["a"]}`))
			return
		}
		w.Header().Set("Link", `</v2/test/repo/tags/list?n=1&last=a>; rel="next"`)
		w.Write([]byte(`{"tags":["b"]}`))
	})
	base = "http://" + c.Registry().Host
	tags, err := c.Tags(context.Background())
	if !errors.Is(err, registry.ErrProtocol) || len(tags) != 2 {
		t.Fatalf("got %v, %v; want [a b] and a loop error", tags, err)
	}
}

func artifactFixture(t *testing.T, disable bool) (*registry.Client, *oci.Image, []v1.Descriptor) {
	t.Helper()
	mem := oci.NewMemory()
	img := newImage(t, mem, linuxAMD64, 10)
	s := registry.NewServer()
	s.DisableReferrers = disable
	mustAdd(t, s, "a/b", "v1", img)
	empty := mem.Add("application/vnd.oci.empty.v1+json", []byte("{}"))
	subj := img.Descriptor()
	var refs []v1.Descriptor
	for i, at := range []string{"application/vnd.example.sbom", "application/vnd.example.sig", "application/vnd.example.sbom"} {
		blob := mem.Add("application/octet-stream", []byte(fmt.Sprintf("payload %d", i)))
		a, err := mem.NewImage(v1.Manifest{ArtifactType: at, Config: empty, Layers: []v1.Descriptor{blob}, Subject: &subj})
		if err != nil {
			t.Fatal(err)
		}
		mustAdd(t, s, "a/b", "", a)
		refs = append(refs, a.Descriptor())
	}
	if disable {
		// The tag schema, as a pushing client maintains it.
		idx, err := mem.NewIndex(v1.Index{Manifests: refs})
		if err != nil {
			t.Fatal(err)
		}
		mustAdd(t, s, "a/b", "sha256-"+img.Digest().Encoded(), idx)
	}
	return clientFor(t, serve(t, s), "a/b"), img, refs
}

func TestReferrers(t *testing.T) {
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("api disabled=%v", disable), func(t *testing.T) {
			c, img, _ := artifactFixture(t, disable)
			ctx := context.Background()
			all, err := c.Referrers(ctx, img.Digest(), "")
			if err != nil || len(all) != 3 {
				t.Fatalf("all: %d, %v", len(all), err)
			}
			sboms, err := c.Referrers(ctx, img.Digest(), "application/vnd.example.sbom")
			if err != nil || len(sboms) != 2 {
				t.Fatalf("sbom: %d, %v", len(sboms), err)
			}
			for _, d := range sboms {
				if d.ArtifactType != "application/vnd.example.sbom" {
					t.Errorf("unfiltered %s", d.ArtifactType)
				}
			}
			none, err := c.Referrers(ctx, oci.NewMemory().Add("x", []byte("y")).Digest, "")
			if err != nil || len(none) != 0 {
				t.Fatalf("unknown subject: %d, %v", len(none), err)
			}
		})
	}
}

func TestReadPlatform(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		p    v1.Platform
		want bool
	}{
		{linuxAMD64, true},
		{v1.Platform{OS: "linux", Architecture: "arm64"}, true},
		{v1.Platform{OS: "linux", Architecture: "arm"}, true},
		{v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, false},
		{v1.Platform{OS: "windows", Architecture: "amd64"}, false},
	} {
		img, err := f.c.ReadPlatform(ctx, "multi", tc.p)
		if tc.want {
			if err != nil {
				t.Errorf("%s: %v", oci.PlatformString(tc.p), err)
				continue
			}
			cfg, _ := img.ReadConfig(context.Background())
			if cfg.Architecture != tc.p.Architecture {
				t.Errorf("%s: got %s", oci.PlatformString(tc.p), cfg.Architecture)
			}
		} else if !errors.Is(err, oci.ErrNoMatchingPlatform) {
			t.Errorf("%s: got %v, want ErrNoMatchingPlatform", oci.PlatformString(tc.p), err)
		} else {
			t.Logf("%v", err)
		}
	}
	// A plain image is checked against the platform.
	if _, err := f.c.ReadPlatform(ctx, "img", linuxARM64); !errors.Is(err, oci.ErrNoMatchingPlatform) {
		t.Errorf("plain image, wrong platform: %v", err)
	}
	if _, err := f.c.ReadPlatform(ctx, "img", linuxAMD64); err != nil {
		t.Errorf("plain image: %v", err)
	}
}

func TestParseReference(t *testing.T) {
	dg := "sha256:" + fmt.Sprintf("%064x", 1)
	for _, tc := range []struct {
		in                  string
		host, repo, tag, dg string
		bad                 bool
	}{
		{in: "ubuntu", host: "registry-1.docker.io", repo: "library/ubuntu", tag: "latest"},
		{in: "ubuntu:22.04", host: "registry-1.docker.io", repo: "library/ubuntu", tag: "22.04"},
		{in: "docker.io/library/ubuntu", host: "registry-1.docker.io", repo: "library/ubuntu", tag: "latest"},
		{in: "docker.io/ubuntu", host: "registry-1.docker.io", repo: "library/ubuntu", tag: "latest"},
		{in: "index.docker.io/user/app:1", host: "registry-1.docker.io", repo: "user/app", tag: "1"},
		{in: "user/app", host: "registry-1.docker.io", repo: "user/app", tag: "latest"},
		{in: "ghcr.io/o/r@" + dg, host: "ghcr.io", repo: "o/r", dg: dg},
		{in: "localhost:5000/r:t@" + dg, host: "localhost:5000", repo: "r", tag: "t", dg: dg},
		{in: "localhost/r", host: "localhost", repo: "r", tag: "latest"},
		{in: "127.0.0.1:5000/a/b/c:v", host: "127.0.0.1:5000", repo: "a/b/c", tag: "v"},
		{in: "[::1]:5000/a:v", host: "[::1]:5000", repo: "a", tag: "v"},
		{in: "", bad: true},
		{in: "Ubuntu", bad: true},
		{in: "ghcr.io/O/r", bad: true},
		{in: "a:-bad", bad: true},
		{in: "a@sha256:123", bad: true},
		{in: "https://ghcr.io/a", bad: true},
		{in: "ghcr.io/", bad: true},
		{in: "a//b", bad: true},
		{in: "host:99999/a", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := registry.ParseReference(tc.in)
			if tc.bad {
				if !errors.Is(err, registry.ErrInvalidReference) {
					t.Fatalf("got %+v, %v; want ErrInvalidReference", r, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Host != tc.host || r.Repository != tc.repo || r.Tag != tc.tag || string(r.Digest) != tc.dg {
				t.Errorf("got %+v", r)
			}
		})
	}
	r, _ := registry.ParseReference("ghcr.io/a:v")
	if c := r.Client(); c.Registry().Scheme != "" {
		t.Errorf("remote scheme: %q, want the default (https only)", c.Registry().Scheme)
	}
}

// TestLoopbackSchemeFallback: a client from Reference.Client for a loopback
// host tries HTTPS, and falls back to plain HTTP once, for its lifetime,
// when the registry answers in plain HTTP; a loopback registry that speaks
// TLS is used over TLS.
func TestLoopbackSchemeFallback(t *testing.T) {
	f := newFixture(t)
	pull := func(t *testing.T, c *registry.Client) {
		t.Helper()
		ref, err := c.Read(context.Background(), "img")
		if err != nil {
			t.Fatal(err)
		}
		img := ref.(*oci.Image)
		for _, d := range img.Layers() {
			if _, err := readAll(t, img, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("plain HTTP", func(t *testing.T) {
		var conns atomic.Int64
		ts := httptest.NewUnstartedServer(f.srv)
		ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
		ts.Start()
		t.Cleanup(ts.Close)
		r, err := registry.ParseReference(ts.Listener.Addr().String() + "/test/repo:img")
		if err != nil {
			t.Fatal(err)
		}
		c := r.Client()
		c.Registry().MaxConnsPerHost = 1 // no extra dial racing a connection back to the pool
		pull(t, c)
		pull(t, c)
		// One refused TLS handshake, then one keep-alive connection.
		if n := conns.Load(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}

		// A client not made by Reference.Client does not fall back, and a
		// plain-HTTP answer to TLS is not retried: one connection.
		direct := (&registry.Registry{Host: ts.Listener.Addr().String(), GetBackOff: fastBackOff}).Repository("test/repo")
		before := conns.Load()
		if _, err := direct.Read(context.Background(), "img"); !errors.Is(err, http.ErrSchemeMismatch) {
			t.Errorf("got %v, want http.ErrSchemeMismatch", err)
		}
		if n := conns.Load() - before; n != 1 {
			t.Errorf("%d connections for a plain-HTTP answer to TLS, want 1 (no retry)", n)
		}
	})
	t.Run("TLS", func(t *testing.T) {
		var plain atomic.Int64
		ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.TLS == nil {
				plain.Add(1)
			}
			f.srv.ServeHTTP(w, req)
		}))
		t.Cleanup(ts.Close)
		r, _ := registry.ParseReference(ts.Listener.Addr().String() + "/test/repo:img")
		c := r.Client()
		c.Registry().Transport = ts.Client().Transport // trusts the test certificate
		pull(t, c)
		if plain.Load() != 0 {
			t.Errorf("%d plain-HTTP requests to a TLS registry", plain.Load())
		}
	})
}

// An unknown repository is ErrNotFound (what Exists used to say as false).
func TestResolveUnknownRepository(t *testing.T) {
	f := newFixture(t)
	c := clientFor(t, serve(t, f.srv), "no/such/repo")
	if _, err := c.Resolve(context.Background(), "v1"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("got %v; want ErrNotFound", err)
	}
}

// Docker Hub references print as containerd names them (hermetic item 3).
func TestReferenceStringContainerdName(t *testing.T) {
	for in, want := range map[string]string{
		"alpine:3.20":                         "docker.io/library/alpine:3.20",
		"docker.io/alpine:3.20":               "docker.io/library/alpine:3.20",
		"registry-1.docker.io/library/alpine": "docker.io/library/alpine:latest",
		"ghcr.io/org/app:v1":                  "ghcr.io/org/app:v1",
	} {
		r, err := registry.ParseReference(in)
		if err != nil || r.String() != want {
			t.Errorf("%s: %q, %v; want %q", in, r.String(), err, want)
		}
		if strings.HasPrefix(want, "docker.io/") && r.Host != "registry-1.docker.io" {
			t.Errorf("%s: Host %q, want registry-1.docker.io (where it is)", in, r.Host)
		}
	}
}
