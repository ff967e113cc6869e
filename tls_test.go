package registry_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// testCA is a private certificate authority made at test time.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ocipull test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}
}

// issue signs a leaf certificate: a server's for 127.0.0.1, or a client's.
func (ca *testCA) issue(t *testing.T, serial int64, client bool) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	if client {
		tmpl.ExtKeyUsage, tmpl.IPAddresses, tmpl.Subject.CommonName = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, "puller"
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
}

// mtlsRegistry serves s over TLS with a certificate from ca, HTTP/2 on,
// and requires a client certificate signed by ca. It counts connections
// and the requests that arrived over HTTP/2.
type mtlsRegistry struct {
	ts          *httptest.Server
	host        string
	conns, h2   atomic.Int64
	clientPEM   []byte
	clientKey   []byte
	clientCert  tls.Certificate
	ca          *testCA
	requestSeen atomic.Int64
}

func newMTLSRegistry(t *testing.T, s http.Handler) *mtlsRegistry {
	t.Helper()
	ca := newTestCA(t)
	serverCert, _, _ := ca.issue(t, 2, false)
	m := &mtlsRegistry{ca: ca}
	m.clientCert, m.clientPEM, m.clientKey = ca.issue(t, 3, true)
	m.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.requestSeen.Add(1)
		if r.ProtoMajor == 2 {
			m.h2.Add(1)
		}
		s.ServeHTTP(w, r)
	}))
	m.ts.EnableHTTP2 = true
	m.ts.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool}
	m.ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			m.conns.Add(1)
		}
	}
	m.ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests expect
	m.ts.StartTLS()
	t.Cleanup(m.ts.Close)
	m.host = strings.TrimPrefix(m.ts.URL, "https://")
	return m
}

func eightLayerImage(t *testing.T) *oci.Image {
	sizes := make([]int, 8)
	for i := range sizes {
		sizes[i] = 64 << 10
	}
	return newImage(t, oci.NewMemory(), linuxAMD64, sizes...)
}

// pullParallel reads every layer of ref's image from 8 goroutines.
func pullParallel(t *testing.T, c *registry.Client, reference string) error {
	t.Helper()
	ctx := context.Background()
	ref, err := c.Read(ctx, reference)
	if err != nil {
		return err
	}
	img := ref.(*oci.Image)
	var wg sync.WaitGroup
	errs := make(chan error, len(img.Layers()))
	for _, l := range img.Layers() {
		wg.Add(1)
		go func(d v1.Descriptor) {
			defer wg.Done()
			_, err := img.ReadBlob(ctx, d, 1<<20)
			errs <- err
		}(l)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func TestTLSConfigPrivateCAClientCertKeepsTransport(t *testing.T) {
	s := registry.NewServer()
	mustAdd(t, s, "team/app", "v1", eightLayerImage(t))
	m := newMTLSRegistry(t, s)

	c := (&registry.Registry{Host: m.host, MaxConnsPerHost: 2, GetBackOff: fastBackOff,
		TLSConfig: &tls.Config{RootCAs: m.ca.pool, Certificates: []tls.Certificate{m.clientCert}},
	}).Repository("team/app")
	if err := pullParallel(t, c, "v1"); err != nil {
		t.Fatal(err)
	}
	if n := m.conns.Load(); n > 2 {
		t.Errorf("%d connections with MaxConnsPerHost 2", n)
	}
	if m.h2.Load() != m.requestSeen.Load() {
		t.Errorf("%d of %d requests over HTTP/2: TLSConfig dropped HTTP/2", m.h2.Load(), m.requestSeen.Load())
	}

	// Without the client certificate the handshake fails, as a
	// certificate error that is not retried.
	bare := (&registry.Registry{Host: m.host, GetBackOff: fastBackOff, TLSConfig: &tls.Config{RootCAs: m.ca.pool}}).Repository("team/app")
	if _, err := bare.Read(context.Background(), "v1"); err == nil {
		t.Error("a registry that requires a client certificate accepted none")
	}
	// Without the CA the certificate is unknown.
	noCA := (&registry.Registry{Host: m.host, GetBackOff: fastBackOff}).Repository("team/app")
	var unknown x509.UnknownAuthorityError
	if _, err := noCA.Read(context.Background(), "v1"); !errors.As(err, &unknown) {
		t.Errorf("without the CA: %v, want x509.UnknownAuthorityError", err)
	}
	// TLSConfig with a Transport of the caller's is refused, not ignored.
	both := (&registry.Registry{Host: m.host, Transport: http.DefaultTransport, TLSConfig: &tls.Config{}}).Repository("team/app")
	if _, err := both.Read(context.Background(), "v1"); err == nil || !strings.Contains(err.Error(), "TLSConfig") {
		t.Errorf("TLSConfig with Transport: %v, want an error naming TLSConfig", err)
	}
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDockerCertsDirPrivateCAClientCert(t *testing.T) {
	s := registry.NewServer()
	mustAdd(t, s, "team/app", "v1", eightLayerImage(t))
	m := newMTLSRegistry(t, s)
	root := t.TempDir()
	dir := filepath.Join(root, m.host) // Docker's host:port directory
	writeFile(t, filepath.Join(dir, "ca.crt"), m.ca.pem)
	writeFile(t, filepath.Join(dir, "client.cert"), m.clientPEM)
	writeFile(t, filepath.Join(dir, "client.key"), m.clientKey)

	c := (&registry.Registry{Host: m.host, MaxConnsPerHost: 2, GetBackOff: fastBackOff}).Repository("team/app")
	if err := c.Registry().LoadHostsDir(root); err != nil {
		t.Fatal(err)
	}
	if err := pullParallel(t, c, "v1"); err != nil {
		t.Fatal(err)
	}
	if n := m.conns.Load(); n > 2 {
		t.Errorf("%d connections with MaxConnsPerHost 2", n)
	}

	// A certificate without its key is an error naming the file.
	os.Remove(filepath.Join(dir, "client.key"))
	c2 := (&registry.Registry{Host: m.host}).Repository("team/app")
	if err := c2.Registry().LoadHostsDir(root); !errors.Is(err, registry.ErrInvalidConfig) || !strings.Contains(err.Error(), "client.cert") {
		t.Errorf("certificate without key: %v, want ErrInvalidConfig naming client.cert", err)
	}
	// A FIFO in place of the CA is refused without blocking.
	os.Remove(filepath.Join(dir, "client.cert"))
	os.Remove(filepath.Join(dir, "ca.crt"))
	if err := mkfifo(filepath.Join(dir, "ca.crt")); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	if err := (&registry.Registry{Host: m.host}).LoadHostsDir(root); !errors.Is(err, registry.ErrInvalidConfig) {
		t.Errorf("FIFO as ca.crt: %v, want ErrInvalidConfig", err)
	}
}

func TestHostsTOMLMirrorWithItsOwnCA(t *testing.T) {
	ms := newMirrorSetup(t, nil)
	// The mirror, this time, is served over mutual TLS.
	m := newMTLSRegistry(t, ms.mirSeen.wrap(ms.mirrorSv))
	root := t.TempDir()
	dir := filepath.Join(root, strings.Replace(ms.regHost, ":", "_", 1)+"_") // containerd's host_port_ form
	writeFile(t, filepath.Join(dir, "mirror-ca.pem"), m.ca.pem)
	writeFile(t, filepath.Join(dir, "puller.pem"), m.clientPEM)
	writeFile(t, filepath.Join(dir, "puller.key"), m.clientKey)
	writeFile(t, filepath.Join(dir, "hosts.toml"), []byte(`# pulls go to the mirror first
server = "http://`+ms.regHost+`"

[host."https://`+m.host+`"]
  capabilities = ["pull", "resolve"]
  ca = "mirror-ca.pem"
  client = [["puller.pem", "puller.key"]]
`))
	c := (&registry.Registry{Host: ms.regHost, GetBackOff: fastBackOff}).Repository("team/app")
	if err := c.Registry().LoadHostsDir(root); err != nil {
		t.Fatal(err)
	}
	if len(c.Registry().Mirrors) != 1 || c.Registry().MirrorsOnly || c.Registry().Scheme != "http" || c.Registry().Mirrors[0].TLSConfig == nil {
		t.Fatalf("after LoadHostsDir: mirrors %+v, MirrorsOnly %v, Scheme %q", c.Registry().Mirrors, c.Registry().MirrorsOnly, c.Registry().Scheme)
	}
	if _, err := pullVerified(t, c, "v1"); err != nil {
		t.Fatal(err)
	}
	if n := len(ms.regSeen.all()); n != 0 {
		t.Errorf("registry saw %d requests, want 0 (the mirror has everything)", n)
	}
	if n := m.requestSeen.Load(); n != 6 {
		t.Errorf("mirror saw %d requests, want 6", n)
	}
}

// LoadHostsDir keeps a TLSConfig set before it when the directory
// configures none for the registry.
func TestLoadHostsDirKeepsCallersTLSConfig(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "registry.example", "hosts.toml"), []byte(`[host."https://mirror.example"]`+"\n"))
	mine := &tls.Config{ServerName: "mine"}
	c := (&registry.Registry{Host: "registry.example", TLSConfig: mine}).Repository("a/b")
	if err := c.Registry().LoadHostsDir(root); err != nil {
		t.Fatal(err)
	}
	if c.Registry().TLSConfig != mine || len(c.Registry().Mirrors) != 1 || c.Registry().MirrorsOnly {
		t.Errorf("after LoadHostsDir: TLSConfig %p (mine %p), mirrors %v, MirrorsOnly %v", c.Registry().TLSConfig, mine, c.Registry().Mirrors, c.Registry().MirrorsOnly)
	}
}

// The registry's TLSConfig (here with a client certificate) never applies
// to a mirror: a mirror that requires that certificate, configured with
// its CA only, refuses the handshake and the registry serves.
func TestRegistryTLSConfigNotUsedForMirrors(t *testing.T) {
	ms := newMirrorSetup(t, nil)
	m := newMTLSRegistry(t, ms.mirSeen.wrap(ms.mirrorSv))
	c := ms.client(registry.Endpoint{Host: m.host, TLSConfig: &tls.Config{RootCAs: m.ca.pool}})
	c.Registry().TLSConfig = &tls.Config{RootCAs: m.ca.pool, Certificates: []tls.Certificate{m.clientCert}}
	if _, err := pullVerified(t, c, "v1"); err != nil {
		t.Fatal(err)
	}
	if n := m.requestSeen.Load(); n != 0 {
		t.Errorf("the mirror served %d requests: the registry's client certificate reached it", n)
	}
	if n := len(ms.regSeen.all()); n != 6 {
		t.Errorf("registry saw %d requests, want 6", n)
	}
}
