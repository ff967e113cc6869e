package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

// Hostile registries and hostile clients: each case here failed before
// the second hardening round (see RELIABILITY.md, "Hostile input").

// tagPages serves tag pages: page(n) returns the tags and the Link.
func tagPages(t *testing.T, page func(r *http.Request, n int) ([]string, string)) (*registry.Client, *atomic.Int64) {
	t.Helper()
	var count atomic.Int64
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(count.Add(1))
		tags, link := page(r, n)
		if link != "" {
			w.Header().Set("Link", link)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"name": "a/b", "tags": tags})
	}))
	return clientFor(t, ts, "a/b"), &count
}

func TestPaginationEnds(t *testing.T) {
	t.Run("endless distinct pages", func(t *testing.T) {
		c, count := tagPages(t, func(_ *http.Request, n int) ([]string, string) {
			return []string{fmt.Sprintf("t%08d", n)}, fmt.Sprintf(`</v2/a/b/tags/list?last=t%08d>; rel="next"`, n)
		})
		c.Registry().MaxPages = 300
		_, err := c.Tags(context.Background())
		if !errors.Is(err, oci.ErrTooLarge) {
			t.Fatalf("got %v, want ErrTooLarge", err)
		}
		if n := count.Load(); n != 300 {
			t.Errorf("%d pages fetched, want 300", n)
		}
	})
	t.Run("too many items", func(t *testing.T) {
		c, _ := tagPages(t, func(_ *http.Request, n int) ([]string, string) {
			tags := make([]string, 100)
			for i := range tags {
				tags[i] = fmt.Sprintf("t%06d-%03d", n, i)
			}
			return tags, fmt.Sprintf(`</v2/a/b/tags/list?last=t%06d-099>; rel="next"`, n)
		})
		c.Registry().MaxListItems = 1000
		if _, err := c.Tags(context.Background()); !errors.Is(err, oci.ErrTooLarge) {
			t.Fatalf("got %v, want ErrTooLarge", err)
		}
	})
	t.Run("equivalent URLs loop", func(t *testing.T) {
		suffixes := []string{"", "&", "&&", "&&&", "&;"}
		c, count := tagPages(t, func(_ *http.Request, n int) ([]string, string) {
			return []string{"x"}, `</v2/a/b/tags/list?last=x` + suffixes[(n)%len(suffixes)] + `>; rel="next"`
		})
		_, err := c.Tags(context.Background())
		if !errors.Is(err, registry.ErrProtocol) {
			t.Fatalf("got %v, want ErrProtocol", err)
		}
		if n := count.Load(); n > 3 {
			t.Errorf("%d pages before the loop was seen, want at most 3", n)
		}
	})
	t.Run("last must advance", func(t *testing.T) {
		c, _ := tagPages(t, func(_ *http.Request, n int) ([]string, string) {
			return []string{"b"}, fmt.Sprintf(`</v2/a/b/tags/list?last=a&page=%d>; rel="next"`, n)
		})
		if _, err := c.Tags(context.Background()); !errors.Is(err, registry.ErrProtocol) {
			t.Fatalf("got %v, want ErrProtocol", err)
		}
	})
	t.Run("link to another origin", func(t *testing.T) {
		other := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Errorf("the other origin was asked for %s", r.URL)
		}))
		c, _ := tagPages(t, func(*http.Request, int) ([]string, string) {
			return []string{"a"}, `<` + other.URL + `/v2/a/b/tags/list?last=a>; rel="next"`
		})
		if _, err := c.Tags(context.Background()); !errors.Is(err, registry.ErrProtocol) {
			t.Fatalf("got %v, want ErrProtocol", err)
		}
	})
	t.Run("https link to plain http", func(t *testing.T) {
		var hits atomic.Int64
		plain := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
		ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", `<`+plain.URL+`/v2/a/b/tags/list?last=a>; rel="next"`)
			json.NewEncoder(w).Encode(map[string]any{"tags": []string{"a"}})
		}))
		defer ts.Close()
		c := (&registry.Registry{Host: strings.TrimPrefix(ts.URL, "https://"), Transport: ts.Client().Transport,
			GetBackOff: fastBackOff, AllowCrossOriginLinks: true,
		}).Repository("a/b")
		if _, err := c.Tags(context.Background()); !errors.Is(err, registry.ErrProtocol) {
			t.Fatalf("got %v, want ErrProtocol", err)
		}
		if hits.Load() != 0 {
			t.Error("the plain-HTTP Link was followed")
		}
	})
}

// A server auth user with no password cannot log in with an empty one,
// in token or Basic mode; the scheme is case-insensitive; tokens need no
// server state (one server's tokens are refused by another).
func TestServerAuthHardening(t *testing.T) {
	for _, basic := range []bool{false, true} {
		t.Run(fmt.Sprintf("basic=%v", basic), func(t *testing.T) {
			auth := &registry.ServerAuth{Basic: basic, Users: map[string]registry.ServerUser{
				"robot": {RefreshToken: "rt", Repositories: []string{"*"}},
			}}
			_, _, clientFor := authFixture(t, auth)
			c := clientFor("pub/img")
			c.Registry().Credentials = registry.StaticCredentials("robot", "")
			if _, err := c.Read(context.Background(), "v1"); !errors.Is(err, registry.ErrUnauthorized) {
				t.Fatalf("empty password: got %v, want ErrUnauthorized", err)
			}
		})
	}
	auth := defaultAuth()
	img, _, clientFor := authFixture(t, auth)
	_ = img
	c := clientFor("pub/img")
	// Get a token the way a client does, then use it with a lower-case scheme.
	srvURL := "http://" + c.Registry().Host
	resp, err := http.Get(srvURL + "/token?service=ocipull-registry&scope=repository:pub/img:pull")
	if err != nil {
		t.Fatal(err)
	}
	var tr struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	req, _ := http.NewRequest("GET", srvURL+"/v2/pub/img/manifests/v1", nil)
	req.Header.Set("Authorization", "bearer "+tr.Token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("lower-case bearer: status %d, want 200", resp.StatusCode)
	}
	// A token altered by one character is refused.
	// (A and Q differ in the last character's data bits.)
	swap := byte('A')
	if tr.Token[len(tr.Token)-1] == 'A' {
		swap = 'Q'
	}
	bad := tr.Token[:len(tr.Token)-1] + string(swap)
	req.Header.Set("Authorization", "Bearer "+bad)
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged token: status %d, want 401", resp.StatusCode)
	}
	// The signature's last character carries two unused bits; a spelling
	// that differs only there decodes to the same bytes and is still not
	// the token that was issued.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tr.Token[len(tr.Token)-1])
	if last%4 != 0 {
		t.Fatalf("signature's last character %q uses its low bits", tr.Token[len(tr.Token)-1])
	}
	for _, low := range []int{1, 2, 3} {
		alias := tr.Token[:len(tr.Token)-1] + string(alphabet[last+low])
		req.Header.Set("Authorization", "Bearer "+alias)
		resp, _ = http.DefaultClient.Do(req)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token with the signature's unused bits set (%d): status %d, want 401", low, resp.StatusCode)
		}
	}
}

// Registry-controlled strings reach errors sanitised.
func TestErrorsAreSanitised(t *testing.T) {
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"errors":[{"code":"MANIFEST_UNKNOWN\u001b[2J","message":"gone\u001b]0;pwned\u0007\u202e"}]}`)
	}))
	_, err := clientFor(t, ts, "a/b").Read(context.Background(), "v1")
	if err == nil {
		t.Fatal("no error")
	}
	for _, bad := range []string{"\x1b", "\x07", "\u202e"} {
		if strings.Contains(err.Error(), bad) {
			t.Errorf("error carries %q: %q", bad, err.Error())
		}
	}
}

// A wide index is refused by the walk caps before it is all in memory.
func TestWideIndexBounded(t *testing.T) {
	mem := oci.NewMemory()
	var ms []v1.Descriptor
	for i := 0; i < 40; i++ {
		cfg := mem.Add(v1.MediaTypeImageConfig, []byte(fmt.Sprintf(`{"n":%d}`, i)))
		big := v1.Manifest{Config: cfg, Annotations: map[string]string{"pad": strings.Repeat("p", 1<<20)}}
		img, err := mem.NewImage(big)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, img.Descriptor())
	}
	idx, err := mem.NewIndex(v1.Index{Manifests: ms})
	if err != nil {
		t.Fatal(err)
	}
	srv := registry.NewServer()
	mustAdd(t, srv, "a/b", "wide", idx)
	c := clientFor(t, serve(t, srv), "a/b")
	ref, err := c.Read(context.Background(), "wide")
	if err != nil {
		t.Fatal(err)
	}
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	err = l.Write(context.Background(), "wide", ref, &oci.WriteOptions{MaxManifestBytes: 16 << 20})
	if !errors.Is(err, oci.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

// A registry that drips a manifest at 1 KiB per stall window is stalled,
// however long the body.
func TestDripBelowRateFloorIsStalled(t *testing.T) {
	mem := oci.NewMemory()
	cfg := mem.Add(v1.MediaTypeImageConfig, []byte(`{}`))
	img, err := mem.NewImage(v1.Manifest{Config: cfg, Annotations: map[string]string{"pad": strings.Repeat("p", 16<<10)}})
	if err != nil {
		t.Fatal(err)
	}
	srv := registry.NewServer()
	mustAdd(t, srv, "a/b", "big", img)
	inj := &faults.Injector{Next: srv}
	// 1 KiB per 200 ms: enough for the old rule of 1 KiB per stall window.
	inj.Add(faults.Rule{Path: "/manifests/", Fault: faults.Drip(0, 1<<10, 200*time.Millisecond)})
	c := clientFor(t, serve(t, inj), "a/b")
	c.Registry().StallTimeout = 300 * time.Millisecond
	start := time.Now()
	_, err = c.Read(context.Background(), "big")
	if !errors.Is(err, registry.ErrStalled) {
		t.Fatalf("got %v, want ErrStalled", err)
	}
	t.Logf("gave up after %v", time.Since(start))
}

// A Range whose end is beyond int64 is served as 206 to the end.
func TestHugeRangeEnd(t *testing.T) {
	f := newFixture(t)
	ts := serve(t, f.srv)
	req, _ := http.NewRequest("GET", ts.URL+"/v2/test/repo/blobs/"+string(f.img.Layers()[0].Digest), nil)
	req.Header.Set("Range", "bytes=10-99999999999999999999999999")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	size := f.img.Layers()[0].Size
	if resp.StatusCode != http.StatusPartialContent || int64(len(b)) != size-10 {
		t.Errorf("status %d, %d bytes; want 206 with %d", resp.StatusCode, len(b), size-10)
	}
	if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes 10-%d/%d", size-1, size); got != want {
		t.Errorf("Content-Range %q, want %q", got, want)
	}
}

// A wrong password at a token endpoint that answers 403 is reported as
// unauthorized (wrong credentials), not as a denied repository.
func TestTokenEndpoint403IsUnauthorized(t *testing.T) {
	realm := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"details":"incorrect username or password"}`)
	}))
	reg := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm.URL+`/token",service="s"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	c := clientFor(t, reg, "a/b")
	c.Registry().Credentials = registry.StaticCredentials("u", "wrong")
	_, err := c.Read(context.Background(), "v1")
	if !errors.Is(err, registry.ErrUnauthorized) || errors.Is(err, registry.ErrDenied) {
		t.Fatalf("got %v, want ErrUnauthorized and not ErrDenied", err)
	}
	var ce *registry.ClientError
	if !errors.As(err, &ce) || ce.StatusCode != http.StatusForbidden {
		t.Errorf("the token endpoint's status is not reachable: %v", err)
	}
}
