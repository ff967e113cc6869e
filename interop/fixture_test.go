package interop

// Two tests that do the same thing — serve a 3-platform image with auth,
// pull it into a layout with the ecosystem's client, assert the requests
// made — one with our fixtures (ocitest), one with go-containerregistry's
// test registry and random images. Their statement counts are compared in
// TestFixtureStatementCounts.

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

func TestFixtureOcitest(t *testing.T) {
	idx, err := ocitest.Build(ocitest.Spec{Platforms: ocitest.Platforms("linux/amd64", "linux/arm64/v8", "linux/arm/v7")})
	if err != nil {
		t.Fatal(err)
	}
	auth := &registry.ServerAuth{Users: map[string]registry.ServerUser{"alice": {Password: "pw", Repositories: []string{"*"}}}}
	reg := ocitest.NewRegistry(t, auth, map[string]oci.Ref{"app:v1": idx})
	got, err := reg.Client("app", "alice", "pw").Read(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(context.Background(), "v1", got, nil); err != nil {
		t.Fatal(err)
	}
	if n := reg.Count("GET", "/blobs/"); n != 6 {
		t.Errorf("%d blob GETs, want 6 (3 configs, 3 layers)", n)
	}
}

func TestFixtureGgcr(t *testing.T) {
	idx := mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json")
	for _, p := range []ggcrv1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}, {OS: "linux", Architecture: "arm", Variant: "v7"}} {
		img, err := random.Image(1024, 1)
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: ggcrv1.Descriptor{Platform: &p}})
	}
	var mu sync.Mutex
	var blobGets int
	reg := ggcrregistry.New()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "pw" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobGets++
		}
		mu.Unlock()
		reg.ServeHTTP(w, r)
	}))
	defer ts.Close()
	ref, err := name.ParseReference(strings.TrimPrefix(ts.URL, "http://") + "/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	auth := remote.WithAuth(&authn.Basic{Username: "alice", Password: "pw"})
	if err := remote.WriteIndex(ref, idx, auth); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	blobGets = 0
	mu.Unlock()
	got, err := remote.Index(ref, auth)
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.Write(t.TempDir(), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(got); err != nil {
		t.Fatal(err)
	}
	if blobGets != 6 {
		t.Errorf("%d blob GETs, want 6 (3 configs, 3 layers)", blobGets)
	}
}

// TestFixtureStatementCounts counts the statements of the two tests
// above; ours must be at most go-containerregistry's.
func TestFixtureStatementCounts(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "fixture_test.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || (fn.Name.Name != "TestFixtureOcitest" && fn.Name.Name != "TestFixtureGgcr") {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if _, ok := n.(ast.Stmt); ok {
				if _, block := n.(*ast.BlockStmt); !block {
					count[fn.Name.Name]++
				}
			}
			return true
		})
	}
	t.Logf("statements: ocitest %d, go-containerregistry %d", count["TestFixtureOcitest"], count["TestFixtureGgcr"])
	if count["TestFixtureOcitest"] > count["TestFixtureGgcr"] {
		t.Errorf("the ocitest version has more statements (%d) than go-containerregistry's (%d)", count["TestFixtureOcitest"], count["TestFixtureGgcr"])
	}
}
