package interop

import (
	"fmt"
	"sort"
	"testing"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// TestPlatformChoiceAgreesWithContainerd: for a table of indexes (ordered
// to catch first-match choices) and requested platforms, our
// Index.SelectPlatform picks what containerd's matcher (platforms.Only:
// Match, then the Less order) picks, and refuses what it refuses.
func TestPlatformChoiceAgreesWithContainerd(t *testing.T) {
	p := func(s string) ocispec.Platform {
		pl, err := oci.ParsePlatform(s)
		if err != nil {
			t.Fatal(err)
		}
		return pl
	}
	indexes := [][]string{
		{"linux/amd64/v3", "linux/amd64", "linux/arm64"},
		{"linux/amd64/v4", "linux/amd64/v2", "linux/386"},
		{"linux/386", "linux/amd64/v2"},
		{"linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm64/v8"},
		{"linux/arm/v7", "linux/arm/v6"},
		{"linux/arm64/v8.4", "linux/arm64/v8.1", "linux/arm64"},
		{"linux/arm/v8", "linux/arm/v7"},
		{"linux/s390x", "linux/ppc64le"},
	}
	wants := []string{"linux/amd64", "linux/amd64/v2", "linux/amd64/v3", "linux/amd64/v4", "linux/arm/v7", "linux/arm/v6",
		"linux/arm64", "linux/arm64/v8.2", "linux/s390x", "linux/386"}
	for _, children := range indexes {
		var ms []ocispec.Descriptor
		mem := oci.NewMemory()
		mem.AllowDangling = true // the children's manifests are not needed to choose
		for i, c := range children {
			pl := p(c)
			ms = append(ms, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest,
				Digest: digest.FromString(fmt.Sprint("child ", i)), Size: 2, Platform: &pl})
		}
		idx, err := mem.NewIndex(ocispec.Index{Manifests: ms})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range wants {
			want := p(w)
			// containerd: the matching children, in its order of preference.
			m := platforms.Only(want)
			var cands []ocispec.Platform
			for _, c := range children {
				if m.Match(p(c)) {
					cands = append(cands, p(c))
				}
			}
			sort.SliceStable(cands, func(i, j int) bool { return m.Less(cands[i], cands[j]) })
			d, ourErr := idx.SelectPlatform(want)
			switch {
			case len(cands) == 0 && ourErr == nil:
				t.Errorf("%v for %s: we pick %s, containerd nothing", children, w, oci.PlatformString(*d.Platform))
			case len(cands) > 0 && ourErr != nil:
				t.Errorf("%v for %s: we pick nothing, containerd %s", children, w, oci.PlatformString(cands[0]))
			case len(cands) > 0 && platforms.Format(platforms.Normalize(*d.Platform)) != platforms.Format(platforms.Normalize(cands[0])):
				t.Errorf("%v for %s: we pick %s, containerd %s", children, w, oci.PlatformString(*d.Platform), oci.PlatformString(cands[0]))
			}
		}
	}
}
