package interop

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// TestSkopeoAgainstOurServer pulls from our Server with skopeo
// (containers/image, a client implementation of its own), anonymously and
// through the server's token auth, into an OCI layout, and checks that the
// index digest is unchanged. .ci/run installs skopeo from Debian's
// packages; without it the test is skipped.
func TestSkopeoAgainstOurServer(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not installed (.ci/run installs it)")
	}
	idx, err := ocitest.Build(ocitest.Spec{Seed: 3, Platforms: ocitest.Platforms("linux/amd64", "linux/arm64/v8")})
	if err != nil {
		t.Fatal(err)
	}
	for _, withAuth := range []bool{false, true} {
		name := "anonymous"
		if withAuth {
			name = "token auth"
		}
		t.Run(name, func(t *testing.T) {
			srv := registry.NewServer()
			var creds []string
			if withAuth {
				srv.Auth = &registry.ServerAuth{Users: map[string]registry.ServerUser{"sk": {Password: "sk-pw", Repositories: []string{"*"}}}}
				creds = []string{"--src-creds", "sk:sk-pw"}
			}
			if err := srv.AddRef("sk/app", "v1", idx); err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			dst := filepath.Join(t.TempDir(), "layout")
			args := append([]string{"--insecure-policy", "copy", "--all", "--preserve-digests", "--src-tls-verify=false"}, creds...)
			args = append(args, "docker://"+hostOf(t, ts)+"/sk/app:v1", "oci:"+dst+":v1")
			cmd := exec.Command(skopeo, args...)
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("skopeo against our server disagrees: %v\n%s", err, out)
			}
			b, err := os.ReadFile(filepath.Join(dst, "index.json"))
			if err != nil {
				t.Fatal(err)
			}
			var got ocispec.Index
			if err := json.Unmarshal(b, &got); err != nil || len(got.Manifests) != 1 {
				t.Fatalf("skopeo's index.json: %s", b)
			}
			if got.Manifests[0].Digest != idx.Digest() {
				t.Errorf("skopeo copied %s, the server holds %s", got.Manifests[0].Digest, idx.Digest())
			}
			if withAuth {
				cmd := exec.Command(skopeo, "inspect", "--raw", "--tls-verify=false", "docker://"+hostOf(t, ts)+"/sk/app:v1")
				cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
				out, err := cmd.CombinedOutput()
				if err == nil || !strings.Contains(strings.ToLower(string(out)), "unauthorized") && !strings.Contains(strings.ToLower(string(out)), "denied") {
					t.Errorf("anonymous skopeo inspect of a private repository: %v\n%s", err, out)
				}
			}
		})
	}
}

// TestSkopeoCopiesPlatformSubsetLayout: a layout ocipull wrote with some
// platforms of an index names only what it holds, so skopeo copy --all
// from it succeeds (hermetic item 4: it failed on the missing children).
func TestSkopeoCopiesPlatformSubsetLayout(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not installed (.ci/run installs it)")
	}
	idx, err := ocitest.Build(ocitest.Spec{Seed: 4, Platforms: ocitest.Platforms("linux/amd64", "linux/arm64/v8", "linux/s390x")})
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "subset")
	l, err := oci.CreateLayout(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(context.Background(), "v1", idx, &oci.WriteOptions{Platforms: ocitest.Platforms("linux/amd64", "linux/s390x")}); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	cmd := exec.Command(skopeo, "--insecure-policy", "copy", "--all", "oci:"+src+":v1", "oci:"+dst+":v1")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy --all from a platform-subset layout: %v\n%s", err, out)
	}
	copied, err := oci.OpenLayout(dst)
	if err != nil {
		t.Fatal(err)
	}
	got, err := copied.Read(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	if x, ok := got.(*oci.Index); !ok || len(x.Manifests()) != 2 {
		t.Errorf("the copy holds %T, want the 2-platform index", got)
	}
}
