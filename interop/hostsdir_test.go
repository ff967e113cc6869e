package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"

	"github.com/ocipull/registry"
)

// hostView is what both readers say about one endpoint, in a shape both
// can be reduced to.
type hostView struct {
	URL           string // scheme://host/path
	Pull, Resolve bool
	RootCAs       bool // a CA was added
	SkipVerify    bool
	ClientCerts   int
	Header        string // canonical names, sorted: "Name=v1,v2 ..."
}

func (h hostView) String() string {
	return fmt.Sprintf("%s pull=%v resolve=%v ca=%v skip=%v certs=%d header=%q", h.URL, h.Pull, h.Resolve, h.RootCAs, h.SkipVerify, h.ClientCerts, h.Header)
}

// headerView reduces extra header fields to one comparable string.
func headerView(h http.Header) string {
	var fields []string
	for k, v := range h {
		fields = append(fields, http.CanonicalHeaderKey(k)+"="+strings.Join(v, ","))
	}
	sort.Strings(fields)
	return strings.Join(fields, " ")
}

func tlsView(h *hostView, cfg *tls.Config) {
	if cfg == nil {
		return
	}
	h.RootCAs, h.SkipVerify, h.ClientCerts = cfg.RootCAs != nil, cfg.InsecureSkipVerify, len(cfg.Certificates)
}

// containerdView is containerd's own reading of root for host: the hosts
// that may pull or resolve, in order.
func containerdView(t *testing.T, root, host string) []hostView {
	t.Helper()
	hosts, err := config.ConfigureHosts(context.Background(), config.HostOptions{HostDir: config.HostDirFromRoot(root)})(host)
	if err != nil {
		t.Fatalf("containerd: %v", err)
	}
	var out []hostView
	for _, h := range hosts {
		v := hostView{URL: h.Scheme + "://" + h.Host + h.Path,
			Pull: h.Capabilities.Has(docker.HostCapabilityPull), Resolve: h.Capabilities.Has(docker.HostCapabilityResolve),
			Header: headerView(h.Header)}
		if !v.Pull && !v.Resolve {
			continue
		}
		if tr, ok := h.Client.Transport.(*http.Transport); ok && tr.TLSClientConfig != nil {
			cfg := tr.TLSClientConfig
			// containerd's shared default has an empty tls.Config.
			if cfg.RootCAs != nil || cfg.InsecureSkipVerify || len(cfg.Certificates) > 0 {
				tlsView(&v, cfg)
			}
		}
		out = append(out, v)
	}
	return out
}

// ourView is our reading: the mirrors, then the registry unless
// MirrorsOnly.
func ourView(t *testing.T, root, refHost string) []hostView {
	t.Helper()
	ref, err := registry.ParseReference(refHost + "/some/repo:v1")
	if err != nil {
		t.Fatal(err)
	}
	c := ref.Client()
	if err := c.Registry().LoadHostsDir(root); err != nil {
		t.Fatalf("ours: %v", err)
	}
	var out []hostView
	for _, m := range c.Registry().Mirrors {
		caps := m.Capabilities
		if caps == 0 {
			caps = registry.CapabilityPull | registry.CapabilityResolve
		}
		v := hostView{URL: m.String(), Pull: caps&registry.CapabilityPull != 0, Resolve: caps&registry.CapabilityResolve != 0,
			Header: headerView(m.Header)}
		tlsView(&v, m.TLSConfig)
		out = append(out, v)
	}
	if !c.Registry().MirrorsOnly {
		scheme := c.Registry().Scheme
		if scheme == "" {
			scheme = "https"
		}
		v := hostView{URL: scheme + "://" + c.Registry().Host + "/v2", Pull: true, Resolve: true, Header: headerView(c.Registry().Header)}
		tlsView(&v, c.Registry().TLSConfig)
		out = append(out, v)
	}
	return out
}

// pemPair makes a CA certificate file and a client certificate and key.
func pemPair(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hosts test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	for name, b := range map[string][]byte{"ca.pem": certPEM, "client.pem": certPEM, "client.key": keyPEM,
		"both.pem": append(append([]byte{}, certPEM...), keyPEM...)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHostsDirAgreesWithContainerd reads a set of certs.d trees with
// containerd's own reader (core/remotes/docker/config) and ours and
// compares what each says: the endpoints in order, their URLs (scheme,
// host, API root), capabilities and TLS settings.
func TestHostsDirAgreesWithContainerd(t *testing.T) {
	type file struct{ dir, name, body string }
	cases := []struct {
		name    string
		refHost string // as the user types it
		hostKey string // the name containerd is asked about
		files   []file
		docker  bool // Docker's cert files, no hosts.toml
	}{
		{name: "docker hub with two mirrors", refHost: "docker.io", hostKey: "docker.io", files: []file{{"docker.io", "hosts.toml", `
server = "https://registry-1.docker.io"

[host."https://mirror-a.example"]
  capabilities = ["pull", "resolve"]
  ca = "ca.pem"

[host."https://mirror-b.example:8443/hub"]
  capabilities = ["pull"]
  skip_verify = true
`}}},
		{name: "host_port_ directory, override_path, client pairs", refHost: "registry.example:5000", hostKey: "registry.example:5000", files: []file{{"registry.example_5000_", "hosts.toml", `
[host."http://cache.example/v2/custom"]
  capabilities = ["pull", "resolve", "push"]
  override_path = true

[host."https://secure.example"]
  client = [["client.pem", "client.key"]]
  ca = ["ca.pem"]

[host."https://push-only.example"]
  capabilities = ["push"]
`}}},
		{name: "top-level TLS for the registry", refHost: "lab.example", hostKey: "lab.example", files: []file{{"lab.example", "hosts.toml", `
ca = "ca.pem"
client = "both.pem"
`}}},
		{name: "server elsewhere", refHost: "quay.example", hostKey: "quay.example", files: []file{{"quay.example", "hosts.toml", `
server = "https://quay-proxy.internal.example/prefix"
capabilities = ["pull", "resolve"]

[host."https://first.example"]
`}}},
		{name: "_default", refHost: "anything.example", hostKey: "anything.example", files: []file{{"_default", "hosts.toml", `
[host."https://everything-mirror.example"]
  capabilities = ["pull"]
`}}},
		{name: "headers and dial timeouts", refHost: "hdr.example", hostKey: "hdr.example", files: []file{{"hdr.example", "hosts.toml", `
dial_timeout = "3s"

[header]
  x-registry-token = "abc"

[host."https://mirror.example"]
  dial_timeout = "500ms"
  [host."https://mirror.example".header]
    X-Custom-1 = "a"
    x-custom-2 = ["b", "c"]
`}}},
		{name: "docker cert files", refHost: "certs.example", hostKey: "certs.example", docker: true},
		{name: "no directory", refHost: "plain.example", hostKey: "plain.example"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tc.files {
				dir := filepath.Join(root, f.dir)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				pemPair(t, dir)
				if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.docker {
				dir := filepath.Join(root, tc.hostKey)
				os.MkdirAll(dir, 0o755)
				pemPair(t, dir)
				os.Rename(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.crt"))
				os.Rename(filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.cert"))
				os.Remove(filepath.Join(dir, "both.pem"))
			}
			want := containerdView(t, root, tc.hostKey)
			got := ourView(t, root, tc.refHost)
			t.Logf("ours %s", views(got))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("endpoints differ\n ours:       %s\n containerd: %s", views(got), views(want))
			}
			if len(want) == 0 {
				t.Error("containerd found no endpoint: the case tests nothing")
			}
		})
	}
}

func views(vs []hostView) string {
	var s []string
	for _, v := range vs {
		s = append(s, v.String())
	}
	return strings.Join(s, "\n             ")
}
