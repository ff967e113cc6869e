package interop

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	orasoci "oras.land/oras-go/v2/content/oci"
	orasregistry "oras.land/oras-go/v2/registry"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/regclient/regclient"
	rcconfig "github.com/regclient/regclient/config"
	rcref "github.com/regclient/regclient/types/ref"

	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// TestReferrersCarriedSeenByOras: an image with a signature and an SBOM
// (artifacts with a subject, as cosign and oras attach them), copied with
// their referrers into the reference registry by oras-go, pulled from it
// with `ocipull pull --referrers` into a layout: oras-go and regclient
// find them in the directory (what `oras discover --oci-layout` and
// `regctl artifact list ocidir://` do), and through `ocipull serve` of it
// (the referrers API), as on the registry.
func TestReferrersCarriedSeenByOras(t *testing.T) {
	img, err := ocitest.Build(ocitest.Spec{Seed: 41})
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := ocitest.Artifact(img, "application/vnd.dev.cosign.artifact.sig.v1+json", []byte("sig"))
	sbom, _ := ocitest.Artifact(img, "application/spdx+json", []byte(`{"spdxVersion":"SPDX-2.3"}`))
	src := ocitest.NewRegistry(t, nil, map[string]oci.Ref{"app/x:v1": img, "app/x:sig": sig, "app/x:sbom": sbom})
	refHost := strings.TrimPrefix(referenceRegistry(t, "", "").URL, "http://")
	ctx := context.Background()
	from, _ := orasremote.NewRepository(src.Host + "/app/x")
	to, _ := orasremote.NewRepository(refHost + "/app/x")
	from.PlainHTTP, to.PlainHTTP = true, true
	if _, err := oras.ExtendedCopy(ctx, from, "v1", to, "v1", oras.DefaultExtendedCopyOptions); err != nil {
		t.Fatalf("oras-go copying the image and its referrers into the reference registry: %v", err)
	}
	bin := buildOcipull(t)
	dir := filepath.Join(t.TempDir(), "layout")
	if out, err := exec.Command(bin, "pull", "--referrers", refHost+"/app/x:v1", dir).CombinedOutput(); err != nil {
		t.Fatalf("pull --referrers: %v\n%s", err, out)
	}
	want := map[string]bool{string(sig.Digest()): true, string(sbom.Digest()): true}
	subject := ocispec.Descriptor{MediaType: img.Descriptor().MediaType, Digest: img.Digest(), Size: img.Descriptor().Size}
	check := func(what string, got []ocispec.Descriptor) {
		t.Helper()
		seen := map[string]bool{}
		for _, d := range got {
			seen[string(d.Digest)] = true
		}
		for d := range want {
			if !seen[d] {
				t.Errorf("%s: %s missing from %v", what, d, got)
			}
		}
	}
	store, err := orasoci.NewWithContext(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := orasregistry.Referrers(ctx, store, subject, "")
	if err != nil {
		t.Fatal(err)
	}
	check("oras-go on the layout directory", onDisk)
	check("regclient on the layout directory", regclientReferrers(t, nil, "ocidir://"+dir+"@"+string(img.Digest())))

	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--quiet", "--repo", "served/app", dir)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("serve said %q", line)
	}
	host := strings.SplitN(strings.TrimPrefix(strings.TrimSpace(line[i:]), "http://"), "/", 2)[0]
	repo, err := orasremote.NewRepository(host + "/served/app")
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	var served []ocispec.Descriptor
	if err := repo.Referrers(ctx, subject, "", func(ds []ocispec.Descriptor) error { served = append(served, ds...); return nil }); err != nil {
		t.Fatal(err)
	}
	check("oras-go through ocipull serve", served)
	check("regclient through ocipull serve", regclientReferrers(t, []string{host}, host+"/served/app@"+string(img.Digest())))
}

// regclientReferrers lists the referrers of subject (a regclient
// reference: ocidir://DIR@DIGEST or HOST/REPO@DIGEST) as `regctl
// artifact list` does; plainHTTP names the hosts spoken to without TLS.
func regclientReferrers(t *testing.T, plainHTTP []string, subject string) []ocispec.Descriptor {
	t.Helper()
	var hosts []rcconfig.Host
	for _, h := range plainHTTP {
		hosts = append(hosts, rcconfig.Host{Name: h, TLS: rcconfig.TLSDisabled})
	}
	rc := regclient.New(regclient.WithConfigHost(hosts...))
	r, err := rcref.New(subject)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := rc.ReferrerList(context.Background(), r)
	if err != nil {
		t.Fatalf("regclient referrers of %s: %v", subject, err)
	}
	var out []ocispec.Descriptor
	for _, d := range rl.Descriptors {
		out = append(out, ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: d.ArtifactType})
	}
	return out
}
