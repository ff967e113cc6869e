package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
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

	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
)

func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

type fixture struct {
	idx  *oci.Index
	inj  *faults.Injector
	host string
}

func newFixture(t *testing.T, auth *registry.ServerAuth) *fixture {
	t.Helper()
	mem := oci.NewMemory()
	idx, err := sampleIndex(context.Background(), mem)
	if err != nil {
		t.Fatal(err)
	}
	srv := registry.NewServer()
	srv.Auth = auth
	if err := srv.AddRef("app/x", "v1", idx); err != nil {
		t.Fatal(err)
	}
	inj := &faults.Injector{Next: srv}
	ts := httptest.NewServer(inj)
	t.Cleanup(ts.Close)
	return &fixture{idx: idx, inj: inj, host: ts.Listener.Addr().String()}
}

func TestPull(t *testing.T) {
	f := newFixture(t, nil)
	dir := filepath.Join(t.TempDir(), "layout")
	code, out, errs := runCmd(t, "", "pull", f.host+"/app/x:v1", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, string(f.idx.Digest())) {
		t.Errorf("output lacks the digest: %s", out)
	}
	l, err := oci.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := l.Read(context.Background(), "v1")
	if err != nil || ref.Digest() != f.idx.Digest() {
		t.Fatalf("layout: %v", err)
	}
	// A rerun of an unchanged image is one HEAD and nothing else.
	f.inj.Reset()
	code, out, errs = runCmd(t, "", "pull", f.host+"/app/x:v1", dir)
	if code != 0 || !strings.Contains(errs, "up to date") || !strings.Contains(out, string(f.idx.Digest())) {
		t.Errorf("rerun: %d %s %s", code, out, errs)
	}
	if n := f.inj.Requests(); n != 1 {
		t.Errorf("rerun made %d requests, want 1 (a HEAD)", n)
	}
	// With a blob gone from the layout, the rerun pulls again and skips
	// what is there.
	l2, _ := oci.OpenLayout(dir)
	img, err := oci.ImageForPlatform(context.Background(), ref, oci.DefaultPlatform())
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(l2.BlobPath(img.Layers()[0].Digest))
	f.inj.Reset()
	code, _, errs = runCmd(t, "", "pull", f.host+"/app/x:v1", dir)
	if code != 0 || !strings.Contains(errs, "8 already present") {
		t.Errorf("rerun after a blob was removed: %d %s", code, errs)
	}
	if n := f.inj.RequestsTo("/blobs/"); n != 1 {
		t.Errorf("rerun fetched %d blobs, want the one removed", n)
	}
	// A blob garbled in place (same size) is not "up to date" either.
	p := l2.BlobPath(img.Layers()[1].Digest)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f.inj.Reset()
	code, out, _ = runCmd(t, "", "pull", f.host+"/app/x:v1", dir)
	if code != 0 || strings.Contains(out, "up to date") || f.inj.RequestsTo("/blobs/") != 1 {
		t.Errorf("rerun over a garbled blob: exit %d, %d blob requests: %s", code, f.inj.RequestsTo("/blobs/"), out)
	}
	// By digest, quiet.
	dir2 := filepath.Join(t.TempDir(), "l2")
	code, out, _ = runCmd(t, "", "pull", "--quiet", f.host+"/app/x@"+string(f.idx.Digest()), dir2)
	if code != 0 || strings.TrimSpace(out) != string(f.idx.Digest()) {
		t.Errorf("by digest: %d %q", code, out)
	}
}

func TestPullPlatformAndResume(t *testing.T) {
	f := newFixture(t, nil)
	f.inj.Add(faults.Rule{Path: "/blobs/", Times: 2, Fault: faults.CutAfter(300 << 10)})
	dir := t.TempDir()
	code, _, errs := runCmd(t, "", "pull", "--platform", "linux/arm64", f.host+"/app/x:v1", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	l, _ := oci.OpenLayout(dir)
	ref, err := l.Read(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	img, ok := ref.(*oci.Image)
	if !ok {
		t.Fatalf("got %T, want one image", ref)
	}
	cfg, _ := img.ReadConfig(context.Background())
	if cfg.Architecture != "arm64" {
		t.Errorf("architecture %s", cfg.Architecture)
	}
}

func TestServeAndPullAgain(t *testing.T) {
	f := newFixture(t, nil)
	dir := t.TempDir()
	if code, _, errs := runCmd(t, "", "pull", f.host+"/app/x:v1", dir); code != 0 {
		t.Fatal(errs)
	}
	srv, n, err := layoutServer(context.Background(), dir, "served/app")
	if err != nil || n != 1 {
		t.Fatalf("%d %v", n, err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- serveUntilDone(ctx, ln, srv, func() {}) }()
	dir2 := t.TempDir()
	code, out, errs := runCmd(t, "", "pull", "--quiet", ln.Addr().String()+"/served/app:v1", dir2)
	if code != 0 || strings.TrimSpace(out) != string(f.idx.Digest()) {
		t.Errorf("pull from served layout: %d %q %s", code, out, errs)
	}
	code, out, _ = runCmd(t, "", "inspect", ln.Addr().String()+"/served/app:v1")
	if code != 0 || !strings.Contains(out, "linux/arm/v7") {
		t.Errorf("inspect: %d %s", code, out)
	}
	code, out, _ = runCmd(t, "", "tags", ln.Addr().String()+"/served/app")
	if code != 0 || strings.TrimSpace(out) != "v1" {
		t.Errorf("tags: %d %q", code, out)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestServeCommandStops(t *testing.T) {
	dir := t.TempDir()
	if _, err := oci.CreateLayout(dir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"serve", "--addr", "127.0.0.1:0", dir}, nil, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "serving") {
		t.Errorf("%d %q %q", code, out.String(), errb.String())
	}
}

func TestAuthFlags(t *testing.T) {
	f := newFixture(t, &registry.ServerAuth{Users: map[string]registry.ServerUser{"u": {Password: "p", Repositories: []string{"*"}}}})
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	dir := t.TempDir()
	code, _, errs := runCmd(t, "p\n", "pull", "--username", "u", "--password-stdin", f.host+"/app/x:v1", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	code, _, errs = runCmd(t, "wrong\n", "pull", "--username", "u", "--password-stdin", f.host+"/app/x:v1", dir)
	if code != 1 || !strings.HasPrefix(errs, "ocipull pull: ") || !strings.Contains(errs, "401") {
		t.Errorf("wrong password: %d %q", code, errs)
	}
}

func TestErrorsAndExitCodes(t *testing.T) {
	f := newFixture(t, nil)
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"pull", "x"}, 2, "want REFERENCE DIR"},
		{[]string{"pull", "--jobs", "0", "a", "b"}, 2, "--jobs"},
		{[]string{"pull", "--nope", "a", "b"}, 2, "unknown flag --nope"},
		{[]string{"pull", "Bad/Ref", dir}, 2, "invalid reference"},
		{[]string{"pull", f.host + "/app/x:missing", dir}, 1, "MANIFEST_UNKNOWN"},
		{[]string{"pull", f.host + "/app/x@sha256:" + strings.Repeat("0", 64), dir}, 1, "MANIFEST_UNKNOWN"},
		{[]string{"pull", "--platform", "windows/amd64", f.host + "/app/x:v1", dir}, 1, "no matching platform"},
		{[]string{"pull", "--platform", "nonsense", f.host + "/app/x:v1", dir}, 2, "--platform"},
		{[]string{"inspect", "127.0.0.1:1/app/x:v1"}, 1, "connection refused"},
		{[]string{"pull", "--help"}, 0, ""},
	} {
		code, _, errs := runCmd(t, "", tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errs, tc.code, tc.want)
		}
		if code == 1 && strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%v: error is not one line: %q", tc.args, errs)
		}
	}
}

func TestPullDigestMismatchLeavesNothingComplete(t *testing.T) {
	f := newFixture(t, nil)
	f.inj.Add(faults.Rule{Path: "/blobs/", Fault: faults.Corrupt()})
	dir := t.TempDir()
	code, _, errs := runCmd(t, "", "pull", f.host+"/app/x:v1", dir)
	if code != 1 || !strings.Contains(errs, "digest mismatch") {
		t.Fatalf("%d %q", code, errs)
	}
	l, _ := oci.OpenLayout(dir)
	idx, _ := l.Index()
	if len(idx.Manifests) != 0 {
		t.Error("index.json names an incomplete pull")
	}
	blobs, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*"))
	for _, b := range blobs {
		if strings.HasSuffix(b, ".partial") {
			continue
		}
		// Only verified content may sit under its digest.
		content, _ := os.ReadFile(b)
		if got := digest.FromBytes(content).Encoded(); got != filepath.Base(b) {
			t.Errorf("%s holds content hashing to %s", b, got)
		}
	}
}

func TestDemo(t *testing.T) {
	code, out, errs := runCmd(t, "", "demo", "--dir", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"verified", "1 of them for a token", "next, try"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestHints(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("pull x: %w", registry.ErrUnauthorized), "--password-stdin"},
		{fmt.Errorf("pull x: %w", registry.ErrDenied), "may not pull"},
		{errors.New(`Get "https://h/v2/": http: server gave HTTP response to HTTPS client`), "--plain-http"},
		{errors.New("write blobs/sha256/x: no space left on device"), "free some disk space"},
		{fmt.Errorf("pull x: %w", registry.ErrStalled), "run the same command again"},
		{fmt.Errorf("pull x: %w", registry.ErrTooManyRequests), "rate-limiting"},
		{fmt.Errorf("pull x: %w", registry.ErrManifestUnknown), "ocipull tags"},
		{fmt.Errorf("pull x: %w", registry.ErrNameUnknown), "check the repository name"},
		{errors.New("something else"), ""},
	} {
		if got := hint("pull", tc.err); !strings.Contains(got, tc.want) || (tc.want == "" && got != "") {
			t.Errorf("hint(%v) = %q, want it to mention %q", tc.err, got, tc.want)
		}
	}
	// The hint for an unknown tag does not send a user of tags to tags.
	if got := hint("tags", fmt.Errorf("x: %w", registry.ErrManifestUnknown)); strings.Contains(got, "ocipull tags") {
		t.Errorf("tags hint %q tells the user to run ocipull tags", got)
	}
}

func TestLayoutTag(t *testing.T) {
	for in, want := range map[string]string{
		"v1": "v1", "ghcr.io/org/app:v1.2": "v1.2", "localhost:5000/app:latest": "latest",
		"localhost:5000/app": "", "": "", "app@sha256:abc": "", "a:-bad": "",
	} {
		if got := layoutTag(in); got != want {
			t.Errorf("layoutTag(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestInterruptedPullResumes: a pull cut short leaves a .partial file; the
// next run continues it with a Range request instead of starting over.
func TestInterruptedPullResumes(t *testing.T) {
	f := newFixture(t, nil)
	child, err := f.idx.Child(context.Background(), f.idx.Manifests()[0])
	if err != nil {
		t.Fatal(err)
	}
	big := child.(*oci.Image).Layers()[0] // 2 MiB
	f.inj.Add(faults.Rule{Path: "/blobs/" + string(big.Digest), Nth: 1, Fault: faults.StallAfter(300<<10, 10*time.Second)})
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"pull", "--jobs", "1", f.host + "/app/x:v1", dir}, nil, &out, &errb)
	if code != 1 {
		t.Fatalf("interrupted pull: exit %d, %s", code, errb.String())
	}
	partials, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*.partial"))
	if len(partials) != 1 {
		t.Fatalf("partial files: %v", partials)
	}
	var ranges atomic.Int64
	f.inj.Reset()
	f.inj.Add(faults.Rule{Path: "/blobs/", Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Header.Get("Range") != "" {
			ranges.Add(1)
		}
		next.ServeHTTP(w, r)
	})})
	code, _, errs := runCmd(t, "", "pull", f.host+"/app/x:v1", dir)
	if code != 0 {
		t.Fatalf("second pull: exit %d, %s", code, errs)
	}
	if ranges.Load() != 1 {
		t.Errorf("range requests on the second run: %d, want 1 (the resumed blob)", ranges.Load())
	}
	if partials, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*.partial")); len(partials) != 0 {
		t.Errorf("partial files left: %v", partials)
	}
}

// TestUntrustedCertificateHint: a loopback registry whose certificate is not
// trusted is an error with a hint, not a fall back to plain HTTP.
func TestUntrustedCertificateHint(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("a request got through an untrusted certificate")
	}))
	t.Cleanup(ts.Close)
	code, _, errs := runCmd(t, "", "inspect", ts.Listener.Addr().String()+"/app/x:v1")
	if code != 1 || !strings.Contains(errs, "--ca-file") {
		t.Errorf("exit %d: %s", code, errs)
	}
	t.Log(errs)
}

// TestServeTLS: serve --tls-cert/--tls-key serves the layout over HTTPS, to a
// client that trusts the certificate.
func TestServeTLS(t *testing.T) {
	f := newFixture(t, nil)
	dir := t.TempDir()
	if code, _, errs := runCmd(t, "", "pull", f.host+"/app/x:v1", dir); code != 0 {
		t.Fatal(errs)
	}
	certFile, keyFile, pool := selfSignedCert(t, "127.0.0.1")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", addr, "--tls-cert", certFile, "--tls-key", keyFile, "--repo", "served/app", dir}, nil, &out, &errb)
	}()
	for start := time.Now(); !strings.Contains(out.String(), "https://"+addr); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("serve did not start: %s %s", out.String(), errb.String())
		}
	}
	c := (&registry.Registry{Host: addr,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}).Repository("served/app")
	ref, err := c.Read(context.Background(), "v1")
	if err != nil || ref.Digest() != f.idx.Digest() {
		t.Fatalf("read over TLS: %v", err)
	}
	// HTTP/2 on TLS listeners.
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	resp, err := h2.Get("https://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("TLS listener spoke %s, want HTTP/2", resp.Proto)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("serve exit %d: %s", code, errb.String())
	}
	if code, _, errs := runCmd(t, "", "serve", "--tls-cert", certFile, dir); code != 2 {
		t.Errorf("--tls-cert without --tls-key: exit %d, %s", code, errs)
	}
}

// selfSignedCert writes a certificate and key for host and returns their
// files and a pool that trusts the certificate.
func selfSignedCert(t *testing.T, host string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	return selfSigned(t, host, x509.ExtKeyUsageServerAuth)
}

// selfSigned is selfSignedCert for a usage (server or client).
func selfSigned(t *testing.T, host string, usage x509.ExtKeyUsage) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP(host)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Flags before the command work as after it (newcomer item 3).
func TestFlagsBeforeCommand(t *testing.T) {
	f := newFixture(t, nil)
	for _, args := range [][]string{
		{"-v", "digest", f.host + "/app/x:v1"},
		{"--plain-http", "digest", f.host + "/app/x:v1"},
		{"--timeout", "30s", "digest", f.host + "/app/x:v1"},
	} {
		code, out, errs := runCmd(t, "", args...)
		if code != 0 || !strings.Contains(out, string(f.idx.Digest())) {
			t.Errorf("%q: exit %d, %q, %s", args, code, out, errs)
		}
	}
}

// An empty --password-stdin is refused, not sent (newcomer item 8).
func TestEmptyPasswordStdinRefused(t *testing.T) {
	f := newFixture(t, nil)
	code, _, errs := runCmd(t, "\n", "digest", "-u", "bob", "--password-stdin", f.host+"/app/x:v1")
	if code != 2 || !strings.Contains(errs, "no password") {
		t.Errorf("exit %d: %s", code, errs)
	}
	if n := f.inj.RequestsTo("/v2/"); n != 0 {
		t.Errorf("%d requests sent with an empty password", n)
	}
}

// 404s say which of repository, tag or digest is unknown, even for a
// HEAD-only resolve (newcomer item 5).
func TestNotFoundSaysWhat(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct{ ref, want string }{
		{f.host + "/no/such:v1", "does not know this repository"},
		{f.host + "/app/x:nope", "no such tag"},
		{f.host + "/app/x@sha256:" + strings.Repeat("0", 64), "check the digest"},
	} {
		code, _, errs := runCmd(t, "", "digest", tc.ref)
		if code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d: %s; want %q", tc.ref, code, errs, tc.want)
		}
	}
}

// pull writes its digest alone on stdout, for scripts; the progress and
// the summary go to stderr (newcomer item 8).
func TestPullStdoutIsTheDigest(t *testing.T) {
	f := newFixture(t, nil)
	code, out, errs := runCmd(t, "", "pull", f.host+"/app/x:v1", t.TempDir())
	if code != 0 || out != string(f.idx.Digest())+"\n" || !strings.Contains(errs, "pulled ") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// A mistyped command gets a suggestion (newcomer item 5).
func TestDidYouMean(t *testing.T) {
	code, _, errs := runCmd(t, "", "pul", "x", "y")
	if code != 2 || !strings.Contains(errs, `did you mean "pull"`) {
		t.Errorf("exit %d: %s", code, errs)
	}
	code, _, errs = runCmd(t, "", "frobnicate")
	if code != 2 || strings.Contains(errs, "did you mean") {
		t.Errorf("exit %d: %s", code, errs)
	}
}
