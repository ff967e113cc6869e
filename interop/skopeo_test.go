package interop

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
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
	mem := oci.NewMemory()
	var children []ocispec.Descriptor
	for _, p := range []ocispec.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}} {
		cfg, _ := mem.AddJSON(ocispec.MediaTypeImageConfig, ocispec.Image{Platform: p, RootFS: ocispec.RootFS{Type: "layers"}})
		layer := mem.Add(ocispec.MediaTypeImageLayerGzip, gzippedTar(t, "hello-"+p.Architecture, []byte("a real layer")))
		img, err := mem.NewImage(ocispec.Manifest{Config: cfg, Layers: []ocispec.Descriptor{layer}})
		if err != nil {
			t.Fatal(err)
		}
		d := img.Descriptor()
		pp := p
		d.Platform = &pp
		children = append(children, d)
	}
	idx, err := mem.NewIndex(ocispec.Index{Manifests: children})
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

// gzippedTar is a one-file gzip-compressed tar, a layer any client can unpack.
func gzippedTar(t *testing.T, name string, content []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(content)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
