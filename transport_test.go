package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cenkalti/backoff/v4"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

// TestTokenRequestsBoundedByRetries: with the token endpoint answering
// 503, one Read sends at most retries+1 token requests: the token fetch is
// part of the attempt, retried by the one loop, never by a loop of its own.
func TestTokenRequestsBoundedByRetries(t *testing.T) {
	_, inj, clientFor := authFixture(t, defaultAuth())
	inj.Add(faults.Rule{Path: "/token", Fault: faults.Status(http.StatusServiceUnavailable, "")})
	c := clientFor("pub/img")
	const retries = 5
	c.Registry().GetBackOff = func() backoff.BackOff {
		return backoff.WithMaxRetries(backoff.NewConstantBackOff(time.Millisecond), retries)
	}
	_, err := c.Read(context.Background(), "v1")
	if !strings.Contains(fmt.Sprint(err), "503") {
		t.Fatalf("got %v, want a 503 from the token endpoint", err)
	}
	if n := inj.RequestsTo("/token"); n > retries+1 {
		t.Errorf("%d token requests for one Read with %d retries, want at most %d", n, retries, retries+1)
	}
}

// TestTokenWaiterSurvivesFetcherCancel: goroutine B waits on a token
// fetch that goroutine A started; A's context ends mid-fetch; B, whose
// context is live, still gets its manifest. In a synctest bubble over an
// in-memory transport, so that "B is waiting" is a fact (synctest.Wait),
// not a sleep.
func TestTokenWaiterSurvivesFetcherCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		img := newImage(t, oci.NewMemory(), linuxAMD64, 100)
		s := registry.NewServer()
		s.Auth = &registry.ServerAuth{Anonymous: []string{"*"}}
		mustAdd(t, s, "pub/img", "v1", img)
		mustAdd(t, s, "pub/other", "v1", img)
		inj := &faults.Injector{Next: s}
		arrived, release := make(chan struct{}), make(chan struct{})
		var armed atomic.Bool
		var slowOnce sync.Once
		inj.Add(faults.Rule{Path: "/token", Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			first := false
			if armed.Load() {
				slowOnce.Do(func() { first = true })
			}
			if first {
				close(arrived)
				select { // the first token request hangs until A gives up
				case <-release:
				case <-r.Context().Done():
				}
			}
			next.ServeHTTP(w, r)
		})})
		reg := &registry.Registry{Scheme: "http", Host: "registry.example", Transport: inMemory{inj}, GetBackOff: fastBackOff}
		// Learn the challenge on one repository, so that both goroutines
		// go straight to the token of another (a scope not cached yet).
		if _, err := reg.Repository("pub/img").Resolve(context.Background(), "v1"); err != nil {
			t.Fatal(err)
		}
		armed.Store(true)
		c := reg.Repository("pub/other")
		ctxA, cancelA := context.WithCancel(context.Background())
		errA := make(chan error, 1)
		go func() { _, err := c.Read(ctxA, "v1"); errA <- err }()
		<-arrived
		errB := make(chan error, 1)
		go func() { _, err := c.Read(context.Background(), "v1"); errB <- err }()
		synctest.Wait() // B is blocked: waiting on A's fetch
		cancelA()
		if err := <-errA; !errors.Is(err, context.Canceled) {
			t.Fatalf("A: got %v, want context.Canceled (the test did not cancel mid-fetch)", err)
		}
		close(release)
		if err := <-errB; err != nil {
			t.Fatalf("B failed with the fetcher's cancellation: %v", err)
		}
	})
}

// inMemory is a RoundTripper that serves each request with a handler, to
// completion, without a network (for tests in a synctest bubble).
type inMemory struct{ h http.Handler }

func (m inMemory) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	m.h.ServeHTTP(rec, r)
	if err := r.Context().Err(); err != nil {
		return nil, err // as a real transport: the caller gave up
	}
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// fallbackRegistry is a plain-HTTP loopback registry reached through a
// client from Reference.Client, which starts with HTTPS and falls back.
func fallbackRegistry(t *testing.T, h http.Handler) *registry.Client {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	r, err := registry.ParseReference(ts.Listener.Addr().String() + "/test/repo:img")
	if err != nil {
		t.Fatal(err)
	}
	c := r.Client()
	c.Registry().GetBackOff = fastBackOff
	return c
}

// TestOriginFallbackAppliesToEveryURL: after the loopback fallback to
// plain HTTP, every URL naming the registry follows it, whenever it was
// built: the retry of a 503 with Retry-After, Link pages of tags and the
// catalog, a resumed blob range, referrers.
func TestOriginFallbackAppliesToEveryURL(t *testing.T) {
	mem := oci.NewMemory()
	img := newImage(t, mem, linuxAMD64, 300_000)
	srv := registry.NewServer()
	for _, tag := range []string{"a", "b", "c", "d", "e"} {
		mustAdd(t, srv, "test/repo", tag, img)
	}
	mustAdd(t, srv, "test/other", "x", img)
	mustAdd(t, srv, "test/third", "x", img)
	art, err := mem.NewImage(v1.Manifest{ArtifactType: "application/x.sig", Config: mem.Add("application/x.sig", []byte("sig")), Subject: ptr(img.Descriptor())})
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, srv, "test/repo", "", art)

	t.Run("retry after 503", func(t *testing.T) {
		inj := &faults.Injector{Next: srv}
		inj.Add(faults.Rule{Path: "/manifests/", Times: 1, Fault: faults.Status(http.StatusServiceUnavailable, "0")})
		c := fallbackRegistry(t, inj)
		if _, err := c.Read(context.Background(), "a"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("tags pages", func(t *testing.T) {
		c := fallbackRegistry(t, srv)
		var got []string
		for tag, err := range c.ListTags(context.Background(), 2) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, tag)
		}
		if strings.Join(got, ",") != "a,b,c,d,e" {
			t.Errorf("got %v", got)
		}
	})
	t.Run("catalog pages", func(t *testing.T) {
		c := fallbackRegistry(t, srv)
		var got []string
		for name, err := range c.Registry().ListRepositories(context.Background(), 1) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, name)
		}
		if len(got) != 3 {
			t.Errorf("got %v, want 3 repositories", got)
		}
	})
	t.Run("resumed blob", func(t *testing.T) {
		inj := &faults.Injector{Next: srv}
		inj.Add(faults.Rule{Path: "/blobs/", Times: 1, Fault: faults.CutAfter(100_000)})
		c := fallbackRegistry(t, inj)
		ref, err := c.Read(context.Background(), "a")
		if err != nil {
			t.Fatal(err)
		}
		im := ref.(*oci.Image)
		b, err := im.ReadBlob(context.Background(), im.Layers()[0], 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 300_000 {
			t.Errorf("got %d bytes", len(b))
		}
		if n := inj.RequestsTo("/blobs/"); n < 2 {
			t.Errorf("%d blob requests, want a resumption", n)
		}
	})
	t.Run("referrers", func(t *testing.T) {
		c := fallbackRegistry(t, srv)
		if _, err := c.Read(context.Background(), "a"); err != nil { // falls back here
			t.Fatal(err)
		}
		refs, err := c.Referrers(context.Background(), img.Digest(), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) != 1 || refs[0].Digest != art.Digest() {
			t.Errorf("got %v", refs)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// TestRefOutlivesReadContext: a ref read under a context that has since
// ended still opens its blobs and children under the caller's new
// context (no value stores a context).
func TestRefOutlivesReadContext(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	ref, err := f.c.Read(ctx, "multi")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	idx := ref.(*oci.Index)
	child, err := idx.Child(context.Background(), idx.Manifests()[0])
	if err != nil {
		t.Fatalf("child after the Read context ended: %v", err)
	}
	img := child.(*oci.Image)
	rc, err := img.OpenBlob(context.Background(), img.Layers()[0])
	if err != nil {
		t.Fatalf("blob after the Read context ended: %v", err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	// And a walk governed by a cancelled context stops.
	dead, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := oci.Walk(dead, ref, func(oci.Ref) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("walk under a cancelled context: got %v, want context.Canceled", err)
	}
}
