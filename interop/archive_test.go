package interop

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/ocitest"
)

// archiveDigests reads a docker-archive tarball: the sha256 of the config
// and of each layer, in manifest.json's order, and its RepoTags.
func archiveDigests(t *testing.T, path string) (config string, layers []string, tags []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "manifest.json" {
			if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
				t.Fatal(err)
			}
			continue
		}
		hash := sha256.New()
		io.Copy(hash, tr)
		sums[h.Name] = "sha256:" + hex.EncodeToString(hash.Sum(nil))
	}
	if len(manifest) != 1 {
		t.Fatalf("%s: manifest.json has %d entries, want 1", path, len(manifest))
	}
	for _, l := range manifest[0].Layers {
		layers = append(layers, sums[l])
	}
	return sums[manifest[0].Config], layers, manifest[0].RepoTags
}

// TestDockerArchiveMatchesCraneAndLoadsInSkopeo pulls one platform of an
// index as a docker-archive with the ocipull binary, then checks that its
// config and layer digests are those of go-containerregistry's tarball
// (crane's format) of the same image, and that skopeo's docker-archive:
// transport reads it and copies it to an OCI layout with the same digests.
func TestDockerArchiveMatchesCraneAndLoadsInSkopeo(t *testing.T) {
	idx, err := ocitest.Build(ocitest.Spec{Seed: 77, Layers: 3, LayerSize: 64 << 10, Platforms: ocitest.Platforms("linux/amd64", "linux/arm64/v8")})
	if err != nil {
		t.Fatal(err)
	}
	srv := registry.NewServer()
	if err := srv.AddRef("ar/app", "v1", idx); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	host := hostOf(t, ts)
	bin := buildOcipull(t)
	// Built from this module's checkout, the binary states its VCS
	// revision; built from another module (as here) it says how.
	if out, err := exec.Command(bin, "--version").Output(); err != nil || !strings.Contains(string(out), "ocipull (replaced by ../)") {
		t.Errorf("--version of a build through interop's replace: %v %q", err, out)
	}
	own := filepath.Join(t.TempDir(), "ocipull-own")
	build := exec.Command("go", "build", "-buildvcs=auto", "-o", own, "./cmd/ocipull")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in the checkout: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("git"); err == nil && exists("../.git") {
		if out, err := exec.Command(own, "--version").Output(); err != nil || !strings.Contains(string(out), " revision ") {
			t.Errorf("--version of a build in the checkout: %v %q, want the VCS revision", err, out)
		}
	}
	ours := filepath.Join(t.TempDir(), "ours.tar")
	if out, err := exec.Command(bin, "pull", "--format", "docker-archive", "-p", "linux/arm64", host+"/ar/app:v1", ours).CombinedOutput(); err != nil {
		t.Fatalf("ocipull: %v\n%s", err, out)
	}
	cfg, layers, tags := archiveDigests(t, ours)
	if !reflect.DeepEqual(tags, []string{host + "/ar/app:v1"}) {
		t.Errorf("RepoTags %q", tags)
	}

	// crane's tarball of the same platform's image.
	ref, err := name.ParseReference(host+"/ar/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithPlatform(ggcrv1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}))
	if err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(t.TempDir(), "crane.tar")
	if err := tarball.WriteToFile(theirs, ref, img); err != nil {
		t.Fatal(err)
	}
	ccfg, clayers, _ := archiveDigests(t, theirs)
	if cfg != ccfg || !reflect.DeepEqual(layers, clayers) {
		t.Errorf("digests differ from crane's tarball:\n ours  config %s layers %v\n crane config %s layers %v", cfg, layers, ccfg, clayers)
	}
	wantCfg, _ := img.ConfigName()
	if cfg != wantCfg.String() {
		t.Errorf("config %s, the image's is %s", cfg, wantCfg)
	}

	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not installed (.ci/run installs it): the load check is skipped")
	}
	out, err := exec.Command(skopeo, "--insecure-policy", "inspect", "docker-archive:"+ours).Output()
	if err != nil {
		t.Fatalf("skopeo inspect docker-archive: %v", err)
	}
	var info struct {
		Layers       []string
		Architecture string
		RepoTags     []string
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	// skopeo's docker-archive transport names layers by their
	// uncompressed digests (it decompresses what it loads, as docker load
	// does): they must be the config's diff_ids.
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var diffIDs []string
	for _, d := range cf.RootFS.DiffIDs {
		diffIDs = append(diffIDs, d.String())
	}
	if !reflect.DeepEqual(info.Layers, diffIDs) || info.Architecture != "arm64" {
		t.Errorf("skopeo reads layers %v arch %q, want the diff_ids %v and arm64", info.Layers, info.Architecture, diffIDs)
	}
	dst := filepath.Join(t.TempDir(), "copied")
	if out, err := exec.Command(skopeo, "--insecure-policy", "copy", "docker-archive:"+ours, "oci:"+dst+":v1").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy docker-archive: %v\n%s", err, out)
	}
	// The copy (recompressed by skopeo) holds the same filesystem: its
	// config lists the same diff_ids.
	out, err = exec.Command(skopeo, "--insecure-policy", "inspect", "--config", "oci:"+dst+":v1").Output()
	if err != nil {
		t.Fatalf("skopeo inspect --config of the copy: %v", err)
	}
	var copied struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(out, &copied); err != nil || !reflect.DeepEqual(copied.RootFS.DiffIDs, diffIDs) {
		t.Errorf("skopeo's copy has diff_ids %v (%v), want %v", copied.RootFS.DiffIDs, err, diffIDs)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
