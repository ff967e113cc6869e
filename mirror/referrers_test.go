package mirror_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/mirror"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// TestReferrersSurviveRestartWithUpstreamDown: a referrers answer is
// kept in the store under the referrers tag schema's tag, so that after
// a restart, with the upstream gone, the cache still answers it (marked
// stale, filtered as asked) for that repository and no other, and a
// client follows it to the signature it names.
func TestReferrersSurviveRestartWithUpstreamDown(t *testing.T) {
	up := newUpstream(t, 10_000)
	sig, err := ocitest.Artifact(up.img, "application/vnd.test.sig", []byte("signature"))
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, up.srv, "team/app", "sig", sig)
	mustAdd(t, up.srv, "other/app", "v1", up.img)
	dir := t.TempDir()
	m, ms := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	path := "/v2/team/app/referrers/" + string(up.img.Digest())
	lists := func(body []byte) []v1.Descriptor {
		t.Helper()
		var idx v1.Index
		if err := json.Unmarshal(body, &idx); err != nil {
			t.Fatalf("referrers answer: %v\n%s", err, body)
		}
		return idx.Manifests
	}
	code, _, body, err := rawGet(t, ms, "GET", path)
	if err != nil || code != 200 {
		t.Fatalf("referrers through the cache: %d %v", code, err)
	}
	if got := lists(body); len(got) != 1 || got[0].Digest != sig.Digest() {
		t.Fatalf("referrers through the cache: %+v, want the signature", got)
	}
	// The signature itself, fetched once by a client while up.
	if code, _, _, _ := rawGet(t, ms, "GET", "/v2/team/app/manifests/"+string(sig.Digest())); code != 200 {
		t.Fatalf("signature manifest: %d", code)
	}
	ms.Close()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	tag := "sha256-" + up.img.Digest().Encoded()
	if !strings.Contains(string(raw), "/team/app:"+tag) {
		t.Errorf("index.json does not name the referrers tag %s:\n%s", tag, raw)
	}

	up.ts.Close()
	_, ms2 := newMirror(t, dir, map[string]*upstreamFixture{"": up}, nil)
	code, hdr, body, err := rawGet(t, ms2, "GET", path)
	if err != nil || code != 200 {
		t.Fatalf("referrers after a restart, upstream down: %d %v\n%s", code, err, body)
	}
	if !strings.Contains(hdr.Get("Warning"), "110") {
		t.Errorf("stale referrers answer without a Warning: %q", hdr.Get("Warning"))
	}
	if got := lists(body); len(got) != 1 || got[0].Digest != sig.Digest() || got[0].ArtifactType != "application/vnd.test.sig" {
		t.Errorf("stale referrers: %+v, want the signature with its artifact type", got)
	}
	code, hdr, body, _ = rawGet(t, ms2, "GET", path+"?artifactType=application/spdx%2Bjson")
	if code != 200 || hdr.Get("OCI-Filters-Applied") != "artifactType" || len(lists(body)) != 0 {
		t.Errorf("filtered stale referrers: %d %q %s", code, hdr.Get("OCI-Filters-Applied"), body)
	}
	// The tag-schema tag names the same list.
	code, _, body, _ = rawGet(t, ms2, "GET", "/v2/team/app/manifests/"+tag)
	if got := lists(body); code != 200 || len(got) != 1 || got[0].Digest != sig.Digest() {
		t.Errorf("manifest %s, upstream down: %d %s", tag, code, body)
	}
	// Another repository holding the same subject never saw the list.
	if code, _, _, _ := rawGet(t, ms2, "GET", "/v2/other/app/referrers/"+string(up.img.Digest())); code < 500 {
		t.Errorf("another repository's referrers, upstream down: %d, want 5xx", code)
	}
	// A client follows the stale list to the stored signature.
	c := clientFor(t, ms2, "team/app")
	ds, err := c.Referrers(context.Background(), up.img.Digest(), "")
	if err != nil || len(ds) != 1 {
		t.Fatalf("client referrers, upstream down: %v %v", ds, err)
	}
	ref, err := c.Read(context.Background(), string(ds[0].Digest))
	if err != nil {
		t.Fatalf("reading the signature offline: %v", err)
	}
	if _, ok := ref.(*oci.Image); !ok || ref.Digest() != sig.Digest() {
		t.Errorf("signature read offline: %T %s", ref, ref.Digest())
	}
}

// TestPrefetchReferrersInVirtualTime: with PrefetchReferrers, a manifest
// fetched for a client brings its referrers list and each referrer
// manifest into the store in the background, so that the client's later
// requests for them cost the upstream nothing; without it, nothing is
// fetched that no client asked for.
func TestPrefetchReferrersInVirtualTime(t *testing.T) {
	for _, prefetch := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			mem := oci.NewMemory()
			img := newImage(t, mem, 1000)
			sig, err := ocitest.Artifact(img, "application/vnd.test.sig", []byte("signature"))
			if err != nil {
				t.Fatal(err)
			}
			srv := registry.NewServer()
			mustAdd(t, srv, "team/app", "v1", img)
			mustAdd(t, srv, "team/app", "sig", sig)
			up := &handlerTransport{h: srv}
			c, err := mirror.Open(t.TempDir(), mirror.Config{PrefetchReferrers: prefetch,
				Upstreams: map[string]mirror.Upstream{"": {URL: "http://upstream.example", Transport: up}}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if rec := cacheGet(c, "/v2/team/app/manifests/v1"); rec.Code != 200 {
				t.Fatalf("manifest: %d", rec.Code)
			}
			synctest.Wait() // the prefetch, if any, has run
			referrers := "GET /v2/team/app/referrers/" + string(img.Digest())
			sigGet := "GET /v2/team/app/manifests/" + string(sig.Digest())
			if !prefetch {
				if n := up.count(referrers) + up.count(sigGet); n != 0 {
					t.Fatalf("without PrefetchReferrers: %d upstream requests no client asked for", n)
				}
				return
			}
			if up.count(referrers) != 1 || up.count(sigGet) != 1 {
				t.Fatalf("prefetch: %d referrers and %d signature requests upstream, want 1 each", up.count(referrers), up.count(sigGet))
			}
			rec := cacheGet(c, "/v2/team/app/referrers/"+string(img.Digest()))
			if rec.Code != 200 || !strings.Contains(rec.Body.String(), string(sig.Digest())) {
				t.Fatalf("referrers after the prefetch: %d %s", rec.Code, rec.Body)
			}
			if rec := cacheGet(c, "/v2/team/app/manifests/"+string(sig.Digest())); rec.Code != 200 {
				t.Fatalf("signature after the prefetch: %d", rec.Code)
			}
			if up.count(referrers) != 1 || up.count(sigGet) != 1 {
				t.Errorf("answered after the prefetch with %d referrers and %d signature requests upstream, want still 1 each", up.count(referrers), up.count(sigGet))
			}
		})
	}
}
