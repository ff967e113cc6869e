package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ocipull/registry/internal/testwait"
)

// TestMirrorTLSClientCertsAndReload: with tls.client_ca, only clients
// with a certificate that CA signed get past the handshake (and speak
// HTTP/2); a renewed server certificate written over the files is served
// by the next handshakes, with no restart.
func TestMirrorTLSClientCertsAndReload(t *testing.T) {
	f := newFixture(t, nil)
	dir := t.TempDir()
	certA, keyA, _ := selfSignedCert(t, "127.0.0.1")
	certB, keyB, _ := selfSignedCert(t, "127.0.0.1")
	certC, keyC, _ := selfSignedCert(t, "127.0.0.1")
	clientCert, clientKey, _ := selfSigned(t, "127.0.0.1", x509.ExtKeyUsageClientAuth)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		tmp := to + ".new"
		os.WriteFile(tmp, b, 0o600)
		os.Rename(tmp, to)
	}
	copyFile(certA, cert)
	copyFile(keyA, key)
	config := filepath.Join(dir, "mirror.toml")
	writeConfig := func(cert, key string) {
		os.WriteFile(config, []byte(fmt.Sprintf("store = %q\n[tls]\ncert = %q\nkey = %q\nclient_ca = %q\n[upstream.a]\ndefault = true\nurl = \"http://%s\"\n",
			filepath.Join(dir, "store"), cert, key, clientCert, f.host)), 0o644)
	}
	writeConfig(cert, key)
	cmd, addr, stderr := startMirrorProcess(t, "--config", config)

	roots := x509.NewCertPool()
	for _, c := range []string{certA, certB, certC} {
		b, _ := os.ReadFile(c)
		roots.AppendCertsFromPEM(b)
	}
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	client := func(withCert bool) *http.Client {
		tc := &tls.Config{RootCAs: roots}
		if withCert {
			tc.Certificates = []tls.Certificate{pair}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, DisableKeepAlives: true}}
	}
	if resp, err := client(false).Get("https://" + addr + "/v2/"); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %d", resp.StatusCode)
	}
	served := func() (proto int, leaf []byte) {
		resp, err := client(true).Get("https://" + addr + "/v2/app/x/manifests/v1")
		if err != nil {
			t.Fatalf("a client with a certificate: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("a client with a certificate: %d", resp.StatusCode)
		}
		return resp.ProtoMajor, resp.TLS.PeerCertificates[0].Raw
	}
	proto, leaf := served()
	if proto != 2 {
		t.Errorf("HTTP/%d, want HTTP/2 over TLS", proto)
	}
	if !bytes.Equal(leaf, derOf(t, certA)) {
		t.Fatal("the first certificate is not the one served")
	}
	copyFile(certB, cert)
	copyFile(keyB, key)
	testwait.Until(t, "the renewed certificate served", func() bool {
		_, leaf := served()
		return bytes.Equal(leaf, derOf(t, certB))
	})

	// A reload (SIGHUP) whose configuration names files that do not load
	// keeps the certificate served; one that names other, good files
	// serves theirs.
	writeConfig(filepath.Join(dir, "missing.pem"), key)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the failed reload logged", func() bool { return strings.Contains(stderr.String(), "missing.pem") })
	if _, leaf := served(); !bytes.Equal(leaf, derOf(t, certB)) {
		t.Fatal("a reload naming a missing certificate changed the one served")
	}
	writeConfig(certC, keyC)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the certificate named by the reloaded configuration served", func() bool {
		_, leaf := served()
		return bytes.Equal(leaf, derOf(t, certC))
	})
}

// derOf is the certificate in a PEM file.
func derOf(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", file)
	}
	return block.Bytes
}
