package mirror

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// countingStore counts index.json rewrites.
type countingStore struct {
	Store
	indexWrites atomic.Int64
}

func (s *countingStore) UpdateIndex(ctx context.Context, fn func(*v1.Index) error) error {
	s.indexWrites.Add(1)
	return s.Store.UpdateIndex(ctx, fn)
}

// Item 9: state that grew forever with each distinct repository name,
// referrers filter and tag. Now every memory is an LRU map of at most
// MaxEntries (MaxTags for tags), no client is kept per repository, and
// a burst of new tags costs a few index.json writes, not one each.
func TestStateIsBounded(t *testing.T) {
	img, err := ocitest.Build(ocitest.Spec{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]oci.Ref{}
	for i := range 200 {
		refs[fmt.Sprintf("team/app:t%03d", i)] = img
	}
	up := ocitest.NewRegistry(t, nil, refs)
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{Store: LayoutStore{l}}
	const entries = 32
	c, err := New(store, Config{Upstreams: map[string]Upstream{"": {URL: up.HTTP.URL}}, MaxEntries: entries, MaxTags: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ts := httptest.NewServer(c)
	defer ts.Close()
	get := func(path string) int {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 200 {
		if code := get(fmt.Sprintf("/v2/team/app/manifests/t%03d", i)); code != 200 {
			t.Fatalf("tag %d: %d", i, code)
		}
		get(fmt.Sprintf("/v2/no/such%d/tags/list", i))
		get(fmt.Sprintf("/v2/no/such%d/manifests/latest", i))
		get(fmt.Sprintf("/v2/team/app/referrers/%s?artifactType=application/x-%d", img.Digest(), i))
		get(fmt.Sprintf("/v2/other%d/blobs/%s", i, img.Digest()))
	}
	for name, n := range map[string]int{
		"known": c.trust.known.len(), "named": c.trust.named.len(), "lists": c.listCache.len(),
		"negative": c.negative.len(), "media types": c.mediaTypes.len(),
	} {
		if n > entries {
			t.Errorf("%s: %d entries, cap %d", name, n, entries)
		}
	}
	if n := c.tags.mem.len(); n > 64 {
		t.Errorf("tags: %d in memory, cap 64", n)
	}
	c.Close()
	if n := store.indexWrites.Load(); n > 20 {
		t.Errorf("200 new tags made %d index.json writes", n)
	}
	idx, err := l.Index()
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) == 0 || len(idx.Manifests) > 64 {
		t.Errorf("index.json names %d tags, want 1..64", len(idx.Manifests))
	}
}
