package interop

import (
	"bytes"
	"context"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ocipull/registry/oci"
)

// buildOcipull builds the ocipull command into a temporary directory.
func buildOcipull(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ocipull")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ocipull/registry/cmd/ocipull").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return bin
}

// TestPullCommandFromReferenceRegistryOverTLS runs the ocipull binary the
// way a user does against the reference registry served over TLS on
// loopback, behind htpasswd: the certificate trusted through SSL_CERT_FILE,
// the password on standard input. The loopback host is tried over HTTPS
// first and used that way; every image and the index land in the layout
// with the digests ggcr pushed, and re-read from disk they verify.
func TestPullCommandFromReferenceRegistryOverTLS(t *testing.T) {
	const user, pass = "interop", "pw-interop"
	app := referenceApp(t, user, pass)
	plain := httptest.NewServer(app) // for ggcr's push: same storage
	t.Cleanup(plain.Close)
	tlsSrv := httptest.NewTLSServer(app)
	t.Cleanup(tlsSrv.Close)
	c := makeContent(t, false)
	push(t, hostOf(t, plain), "peer/content", c, &authn.Basic{Username: user, Password: pass})

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildOcipull(t)
	host := hostOf(t, tlsSrv)
	run := func(env []string, args ...string) (string, string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(pass + "\n")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	home := "HOME=" + t.TempDir() // no docker config of the machine's user

	// Without the CA: refused, with a hint, and no fall back to plain HTTP.
	_, errs, err := run([]string{home}, "pull", "--quiet", "--username", user, "--password-stdin", host+"/peer/content:multi", filepath.Join(t.TempDir(), "x"))
	if err == nil || !strings.Contains(errs, "SSL_CERT_FILE") {
		t.Fatalf("untrusted certificate: err %v, stderr %s", err, errs)
	}

	for tag, want := range map[string]string{
		"multi":  digestOf(t, c.indexes["multi"]),
		"docker": digestOf(t, c.images["docker"]),
	} {
		dir := filepath.Join(t.TempDir(), "layout")
		out, errs, err := run([]string{home, "SSL_CERT_FILE=" + caFile}, "pull", "--quiet", "--username", user, "--password-stdin", host+"/peer/content:"+tag, dir)
		if err != nil {
			t.Fatalf("pull %s: %v\n%s", tag, err, errs)
		}
		if strings.TrimSpace(out) != want {
			t.Fatalf("pull %s printed %q, pushed %s", tag, out, want)
		}
		l, err := oci.OpenLayout(dir)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := l.Read(t.Context(), tag)
		if err != nil || string(ref.Digest()) != want {
			t.Fatalf("layout %s: %v", tag, err)
		}
		var blobs int
		err = oci.Walk(context.Background(), ref, func(r oci.Ref) error {
			if img, ok := r.(*oci.Image); ok {
				for _, d := range img.Blobs() {
					if drain(t, img, d) != d.Digest {
						t.Fatalf("%s: blob %s does not verify", tag, d.Digest)
					}
					blobs++
				}
			}
			return nil
		})
		if err != nil || blobs == 0 {
			t.Fatalf("%s: walked %d blobs: %v", tag, blobs, err)
		}
	}
	// --ca-file instead of SSL_CERT_FILE: the same pull, the CA given to
	// the command (TLSConfig over the tuned transport).
	out, errs, err := run([]string{home}, "digest", "--ca-file", caFile, "--username", user, "--password-stdin", host+"/peer/content:multi")
	if err != nil || strings.TrimSpace(out) != digestOf(t, c.indexes["multi"]) {
		t.Fatalf("digest --ca-file: %v %q\n%s", err, out, errs)
	}
}

// digestOf is the digest of a ggcr image or index.
func digestOf(t testing.TB, x interface{ Digest() (ggcrv1.Hash, error) }) string {
	t.Helper()
	d, err := x.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}
