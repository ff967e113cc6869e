package main

import (
	"context"
	"net/http/httptest"
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
