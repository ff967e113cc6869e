package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// TestPullCarriesReferrers: pull --referrers brings an image's signature
// and SBOM, and the SBOM's own signature, into the layout, verified; the
// layout answers them (ocipull referrers oci:DIR, and ocipull serve's
// referrers API) as the registry did (hermetic item 1).
func TestPullCarriesReferrers(t *testing.T) {
	img, err := ocitest.Build(ocitest.Spec{Seed: 31})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ocitest.Artifact(img, "application/vnd.dev.cosign.artifact.sig.v1+json", []byte("signature"))
	if err != nil {
		t.Fatal(err)
	}
	sbom, err := ocitest.Artifact(img, "application/spdx+json", []byte(`{"spdxVersion":"SPDX-2.3"}`))
	if err != nil {
		t.Fatal(err)
	}
	sbomSig, err := ocitest.Artifact(sbom, "application/vnd.dev.cosign.artifact.sig.v1+json", []byte("sbom signature"))
	if err != nil {
		t.Fatal(err)
	}
	reg := ocitest.NewRegistry(t, nil, map[string]oci.Ref{"app/x:v1": img, "app/x": sig, "app/x:sbom": sbom, "app/x:sbomsig": sbomSig})
	reg.Server.Untag("app/x", "sbom")
	reg.Server.Untag("app/x", "sbomsig")
	dir := t.TempDir()
	code, _, errs := runCmd(t, "", "pull", "--referrers", reg.Host+"/app/x:v1", dir)
	if code != 0 || !strings.Contains(errs, "3 referrers carried") {
		t.Fatalf("pull --referrers: exit %d: %s", code, errs)
	}
	code, out, errs := runCmd(t, "", "referrers", "oci:"+dir+":v1")
	if code != 0 || !strings.Contains(out, string(sig.Digest())) || !strings.Contains(out, string(sbom.Digest())) {
		t.Errorf("referrers from the layout: exit %d: %s %s", code, out, errs)
	}
	// Served, the layout answers the referrers API, the SBOM's signature
	// included.
	srv, _, err := layoutServer(context.Background(), dir, "served/app")
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c := (&registry.Registry{Scheme: "http", Host: ts.Listener.Addr().String()}).Repository("served/app")
	ds, err := c.Referrers(context.Background(), img.Digest(), "")
	if err != nil || len(ds) != 2 {
		t.Errorf("served referrers of the image: %d, %v; want 2", len(ds), err)
	}
	ds, err = c.Referrers(context.Background(), sbom.Digest(), "")
	if err != nil || len(ds) != 1 || ds[0].Digest != sbomSig.Digest() {
		t.Errorf("served referrers of the SBOM: %v, %v; want its signature", ds, err)
	}
	// --artifact-type filters the image's referrers (theirs all come).
	only := filepath.Join(t.TempDir(), "only")
	code, _, errs = runCmd(t, "", "pull", "--referrers", "--artifact-type", "application/spdx+json", reg.Host+"/app/x:v1", only)
	if code != 0 || !strings.Contains(errs, "2 referrers carried") {
		t.Errorf("--artifact-type: exit %d: %s", code, errs)
	}
}

// TestLockCarriesReferrers: lock --referrers pins an image's signature,
// SBOM and the SBOM's signature by digest; pull --lock carries exactly
// those (a referrer attached after the lock is not carried), and a lock
// naming a referrer of another subject is refused.
func TestLockCarriesReferrers(t *testing.T) {
	img, err := ocitest.Build(ocitest.Spec{Seed: 41})
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := ocitest.Artifact(img, "application/vnd.dev.cosign.artifact.sig.v1+json", []byte("signature"))
	sbom, _ := ocitest.Artifact(img, "application/spdx+json", []byte(`{"spdxVersion":"SPDX-2.3"}`))
	sbomSig, _ := ocitest.Artifact(sbom, "application/vnd.dev.cosign.artifact.sig.v1+json", []byte("sbom signature"))
	late, _ := ocitest.Artifact(img, "application/vnd.example.late", []byte("attached after the lock"))
	other, _ := ocitest.Build(ocitest.Spec{Seed: 42})
	otherSig, _ := ocitest.Artifact(other, "application/vnd.dev.cosign.artifact.sig.v1+json", []byte("another image's"))
	reg := ocitest.NewRegistry(t, nil, map[string]oci.Ref{"app/x:v1": img, "app/x:sig": sig, "app/x:sbom": sbom, "app/x:sbomsig": sbomSig})
	lockPath := filepath.Join(t.TempDir(), "images.lock")
	for _, cmd := range []string{"lock", "pull"} {
		if code, _, errs := runCmd(t, "", cmd, "--artifact-type", "application/spdx+json", reg.Host+"/app/x:v1", t.TempDir()); code != 2 || !strings.Contains(errs, "--artifact-type goes with --referrers") {
			t.Errorf("%s --artifact-type without --referrers: exit %d: %s", cmd, code, errs)
		}
	}
	if code, _, errs := runCmd(t, "", "lock", "--referrers", "-o", lockPath, reg.Host+"/app/x:v1"); code != 0 {
		t.Fatalf("lock --referrers: exit %d: %s", code, errs)
	}
	pinned, _ := os.ReadFile(lockPath)
	for _, d := range []oci.Ref{sig, sbom, sbomSig} {
		if !strings.Contains(string(pinned), string(d.Digest())) {
			t.Errorf("the lock does not pin %s:\n%s", d.Digest(), pinned)
		}
	}
	reg.Server.AddRef("app/x", "late", late)
	reg.Server.AddRef("app/x", "othersig", otherSig)
	dir := t.TempDir()
	code, _, errs := runCmd(t, "", "pull", "--lock", lockPath, dir)
	if code != 0 || !strings.Contains(errs, "3 referrers carried") {
		t.Fatalf("pull --lock: exit %d: %s", code, errs)
	}
	code, out, errs := runCmd(t, "", "referrers", "oci:"+dir+":v1")
	if code != 0 || !strings.Contains(out, string(sig.Digest())) || !strings.Contains(out, string(sbom.Digest())) || strings.Contains(out, string(late.Digest())) {
		t.Errorf("referrers in the layout: exit %d: %s %s", code, out, errs)
	}
	// A lock that pins another image's signature as this one's is refused.
	tampered := strings.Replace(string(pinned), string(sig.Digest()), string(otherSig.Digest()), 1)
	bad := filepath.Join(t.TempDir(), "bad.lock")
	os.WriteFile(bad, []byte(tampered), 0o644)
	if code, _, errs := runCmd(t, "", "pull", "--lock", bad, t.TempDir()); code == 0 || !strings.Contains(errs, "its subject is not") {
		t.Errorf("pull --lock with a foreign referrer: exit %d: %s", code, errs)
	}
}
