package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// TestLockfile: ocipull lock pins references with one request each (plus
// the index's GET for pinned platforms), writes the same bytes on a second
// run, and ocipull pull --lock pulls exactly that, failing when a pinned
// platform's manifest is no longer what the index selects.
func TestLockfile(t *testing.T) {
	idx, err := ocitest.Build(ocitest.Spec{Seed: 11, Platforms: ocitest.Platforms("linux/amd64", "linux/arm64")})
	if err != nil {
		t.Fatal(err)
	}
	img, err := ocitest.Build(ocitest.Spec{Seed: 12})
	if err != nil {
		t.Fatal(err)
	}
	a := ocitest.NewRegistry(t, nil, map[string]oci.Ref{"team/multi:v1": idx, "team/single:v1": img})
	b := ocitest.NewRegistry(t, nil, map[string]oci.Ref{"other/single:v2": img})
	list := filepath.Join(t.TempDir(), "images.txt")
	os.WriteFile(list, []byte("# pinned images\n"+b.Host+"/other/single:v2\n"), 0o644)
	lockPath := filepath.Join(t.TempDir(), "images.lock")
	args := []string{"lock", "-o", lockPath, "--from", list, a.Host + "/team/single:v1", a.Host + "/team/multi:v1"}
	if code, _, errs := runCmd(t, "", args...); code != 0 {
		t.Fatalf("lock: exit %d: %s", code, errs)
	}
	if n := a.Count("", "/v2/team/"); n != 2 {
		t.Errorf("lock without platforms made %d requests to the registry, want 2 (one HEAD each)", n)
	}
	first, _ := os.ReadFile(lockPath)
	if code, _, errs := runCmd(t, "", args...); code != 0 {
		t.Fatalf("lock again: exit %d: %s", code, errs)
	}
	if second, _ := os.ReadFile(lockPath); string(second) != string(first) {
		t.Errorf("a second run wrote other bytes:\n%s\n---\n%s", first, second)
	}
	for _, want := range []string{string(idx.Digest()), string(img.Digest()), `"name": "` + a.Host + `/team/multi:v1"`} {
		if !strings.Contains(string(first), want) {
			t.Errorf("the lockfile lacks %s:\n%s", want, first)
		}
	}
	// With platforms: each pinned to its manifest.
	withPlatforms := filepath.Join(t.TempDir(), "platforms.lock")
	if code, _, errs := runCmd(t, "", "lock", "-p", "linux/arm64", "-o", withPlatforms, a.Host+"/team/multi:v1"); code != 0 {
		t.Fatalf("lock -p: exit %d: %s", code, errs)
	}
	arm, err := oci.ImageForPlatform(t.Context(), idx, ocitest.Platforms("linux/arm64")[0])
	if err != nil {
		t.Fatal(err)
	}
	pinned, _ := os.ReadFile(withPlatforms)
	if !strings.Contains(string(pinned), `"platform": "linux/arm64"`) || !strings.Contains(string(pinned), string(arm.Digest())) {
		t.Errorf("the platform is not pinned:\n%s", pinned)
	}
	// pull --lock pulls what is pinned.
	dir := t.TempDir()
	if code, _, errs := runCmd(t, "", "pull", "--lock", withPlatforms, dir); code != 0 {
		t.Fatalf("pull --lock: exit %d: %s", code, errs)
	}
	l, err := oci.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := l.Read(t.Context(), "v1"); err != nil || got.Digest() != arm.Digest() {
		t.Errorf("the layout holds %v (%v), want the pinned arm64 image", got, err)
	}
	// A lock whose pinned platform no longer matches is refused.
	tampered := strings.Replace(string(pinned), string(arm.Digest()), string(img.Digest()), 1)
	bad := filepath.Join(t.TempDir(), "bad.lock")
	os.WriteFile(bad, []byte(tampered), 0o644)
	if code, _, errs := runCmd(t, "", "pull", "--lock", bad, t.TempDir()); code == 0 || !strings.Contains(errs, "the lock pins") {
		t.Errorf("pull --lock with a stale pin: exit %d: %s", code, errs)
	}
}

// TestLockfileFiftyReferences: 50 references across 3 token-auth
// registries resolve with one request each plus tokens (one per scope),
// and a second run writes the same bytes.
func TestLockfileFiftyReferences(t *testing.T) {
	img, err := ocitest.Build(ocitest.Spec{Seed: 21})
	if err != nil {
		t.Fatal(err)
	}
	var regs []*ocitest.Registry
	var refs []string
	for r := range 3 {
		content := map[string]oci.Ref{}
		for i := range 17 {
			if len(refs) == 50 {
				break
			}
			name := fmt.Sprintf("r%d/app%02d:v1", r, i)
			content[name] = img
			refs = append(refs, name)
		}
		reg := ocitest.NewRegistry(t, &registry.ServerAuth{Anonymous: []string{"*"}}, content)
		regs = append(regs, reg)
		for i := range refs {
			if strings.HasPrefix(refs[i], fmt.Sprintf("r%d/", r)) {
				refs[i] = reg.Host + "/" + refs[i]
			}
		}
	}
	lockPath := filepath.Join(t.TempDir(), "images.lock")
	args := append([]string{"lock", "-o", lockPath}, refs...)
	if code, _, errs := runCmd(t, "", args...); code != 0 {
		t.Fatalf("lock: exit %d: %s", code, errs)
	}
	requests, tokens := 0, 0
	for _, reg := range regs {
		requests += reg.Count("", "/v2/")
		tokens += reg.Count("", "/token")
	}
	// One HEAD per reference, plus the first unauthenticated attempt per
	// registry that learns the challenge.
	if requests > 50+3 || tokens != 50 {
		t.Errorf("50 references: %d registry requests, %d token requests; want at most 53 and 50", requests, tokens)
	}
	first, _ := os.ReadFile(lockPath)
	if code, _, errs := runCmd(t, "", args...); code != 0 {
		t.Fatalf("lock again: exit %d: %s", code, errs)
	}
	if second, _ := os.ReadFile(lockPath); string(second) != string(first) {
		t.Error("a second run wrote other bytes")
	}
}
