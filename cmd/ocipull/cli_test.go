package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

func TestFlagsAnywhereAndShortForms(t *testing.T) {
	f := newFixture(t, nil)
	// Flags after the argument, as crane and oras users type them.
	code, out, errs := runCmd(t, "", "inspect", f.host+"/app/x:v1", "--json")
	if code != 0 || !json.Valid([]byte(out)) {
		t.Fatalf("inspect REF --json: exit %d, %q %s", code, out, errs)
	}
	code, out, errs = runCmd(t, "", "inspect", f.host+"/app/x:v1", "-p", "linux/arm64", "--json")
	if code != 0 || !strings.Contains(out, `"platform": "linux/arm64/v8"`) {
		t.Errorf("-p after the argument: exit %d, %s %s", code, out, errs)
	}
	dir := t.TempDir()
	code, out, errs = runCmd(t, "", "pull", f.host+"/app/x:v1", dir, "-q", "-j", "2", "--platform=linux/amd64")
	if code != 0 || strings.TrimSpace(out) == "" || strings.Count(out, "\n") != 1 {
		t.Errorf("pull with trailing short flags: exit %d, %q %s", code, out, errs)
	}
	// "--" ends the flags.
	code, _, errs = runCmd(t, "", "inspect", "--", "-p")
	if code != 2 || !strings.Contains(errs, "invalid reference") {
		t.Errorf("inspect -- -p: exit %d, %s", code, errs)
	}
}

func TestUsageErrorsOnceAndHelpOnStdout(t *testing.T) {
	code, out, errs := runCmd(t, "", "pull", "--nope", "a", "b")
	if code != 2 || strings.Count(errs, "unknown flag") != 1 || strings.Contains(errs, "--jobs") || out != "" {
		t.Errorf("unknown flag: exit %d, stderr %q (want the message once, no flag list)", code, errs)
	}
	for _, args := range [][]string{{"pull", "--help"}, {"pull", "-h"}, {"help", "pull"}} {
		code, out, errs := runCmd(t, "", args...)
		if code != 0 || !strings.HasPrefix(out, "usage: ocipull pull") || !strings.Contains(out, "-p, --platform") || errs != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	code, out, _ = runCmd(t, "", "help")
	for _, c := range commands {
		if !strings.Contains(out, "  "+c.name+" ") {
			t.Errorf("help does not list %s", c.name)
		}
	}
	if code != 0 {
		t.Errorf("help: exit %d", code)
	}
	code, out, _ = runCmd(t, "", "--version")
	if code != 0 || !strings.HasPrefix(out, "ocipull ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("--version: exit %d, %q", code, out)
	}
	code, _, errs = runCmd(t, "", "pull", "a")
	if code != 2 || !strings.Contains(errs, "got 1 argument") || strings.Contains(errs, "1 arguments") {
		t.Errorf("one argument: exit %d, %q", code, errs)
	}
	code, _, errs = runCmd(t, "", "pull", "--jobs", "many", "a", "b")
	if code != 2 || !strings.Contains(errs, "--jobs") {
		t.Errorf("bad flag value: exit %d, %q", code, errs)
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, errs := runCmd(t, "", "completion", shell)
		if code != 0 {
			t.Fatalf("completion %s: exit %d %s", shell, code, errs)
		}
		wants := []string{"manifest", "referrers", "--platform", "--artifact-type", "-q"}
		if shell == "fish" {
			wants = []string{"manifest", "referrers", "-l platform", "-l artifact-type", "-s q"}
		}
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("%s script lacks %q", shell, want)
			}
		}
		for _, want := range []string{"linux/arm64", "docker-archive", "export"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s script lacks the value or subcommand %q", shell, want)
			}
		}
		if path, err := exec.LookPath(shell); err == nil && (shell == "bash" || shell == "zsh") {
			cmd := exec.Command(path, "-n")
			cmd.Stdin = strings.NewReader(out)
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v: %s", shell, err, msg)
			}
		}
	}
	if path, err := exec.LookPath("bash"); err == nil {
		// The script completes a command's flags.
		var script bytes.Buffer
		run(context.Background(), []string{"completion", "bash"}, nil, &script, &script)
		probe := script.String() + `
COMP_WORDS=(ocipull pull --plat); COMP_CWORD=2; _ocipull; echo "${COMPREPLY[@]}"
COMP_WORDS=(ocipull mani); COMP_CWORD=1; _ocipull; echo "${COMPREPLY[@]}"
COMP_WORDS=(ocipull pull -p linux/ar); COMP_CWORD=3; _ocipull; echo "${COMPREPLY[@]}"
`
		out, err := exec.Command(path, "-c", probe).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--platform") || !strings.Contains(string(out), "manifest") ||
			!strings.Contains(string(out), "linux/arm64") {
			t.Errorf("bash completion: %v %q", err, out)
		}
	}
}

// readFixture is a registry with an index, an artifact referring to its
// amd64 image, and a second repository.
type readFixture struct {
	*fixture
	img      *oci.Image
	artifact oci.Ref
}

func newReadFixture(t *testing.T) *readFixture {
	t.Helper()
	ctx := context.Background()
	idx, err := sampleIndex(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	img, err := oci.ImageForPlatform(ctx, idx, v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	art, err := ocitest.Artifact(img, "application/vnd.example.sbom", []byte(`{"sbom":true}`))
	if err != nil {
		t.Fatal(err)
	}
	srv := registry.NewServer()
	for _, add := range []struct {
		repo, tag string
		ref       oci.Ref
	}{{"app/x", "v1", idx}, {"app/x", "", art}, {"app/y", "v2", img}} {
		if err := srv.AddRef(add.repo, add.tag, add.ref); err != nil {
			t.Fatal(err)
		}
	}
	inj := &faults.Injector{Next: srv}
	ts := httptest.NewServer(inj)
	t.Cleanup(ts.Close)
	return &readFixture{fixture: &fixture{idx: idx, inj: inj, host: ts.Listener.Addr().String()}, img: img, artifact: art}
}

func TestReadingCommands(t *testing.T) {
	f := newReadFixture(t)
	ref := f.host + "/app/x:v1"
	// manifest: the exact bytes, of the index or of a platform's image.
	code, out, errs := runCmd(t, "", "manifest", ref)
	if code != 0 || out != string(f.idx.RawManifest()) {
		t.Errorf("manifest: exit %d, %d bytes, want the index's %d exact bytes (%s)", code, len(out), len(f.idx.RawManifest()), errs)
	}
	code, out, _ = runCmd(t, "", "manifest", "-p", "linux/amd64", ref)
	if code != 0 || out != string(f.img.RawManifest()) {
		t.Errorf("manifest -p: exit %d, want the amd64 image's exact bytes", code)
	}
	// config: the config blob's bytes.
	want, err := f.img.ReadBlob(context.Background(), f.img.Config(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd(t, "", "config", "--platform", "linux/amd64", ref)
	if code != 0 || out != string(want) {
		t.Errorf("config: exit %d, %q (%s)", code, out, errs)
	}
	// digest: one HEAD.
	f.inj.Reset()
	code, out, _ = runCmd(t, "", "digest", ref)
	if code != 0 || strings.TrimSpace(out) != string(f.idx.Digest()) || f.inj.Requests() != 1 {
		t.Errorf("digest: exit %d, %q, %d requests; want %s with 1 request", code, out, f.inj.Requests(), f.idx.Digest())
	}
	code, out, _ = runCmd(t, "", "digest", "-p", "linux/amd64", ref)
	if code != 0 || strings.TrimSpace(out) != string(f.img.Digest()) {
		t.Errorf("digest -p: exit %d, %q, want %s", code, out, f.img.Digest())
	}
	// blob: verified into a file.
	layer := f.img.Layers()[0]
	dest := filepath.Join(t.TempDir(), "layer.tgz")
	code, _, errs = runCmd(t, "", "blob", f.host+"/app/x@"+string(layer.Digest), "-o", dest)
	if b, err := os.ReadFile(dest); code != 0 || err != nil || digest.FromBytes(b) != layer.Digest {
		t.Errorf("blob -o: exit %d, %v %s", code, err, errs)
	}
	// A blob that does not verify leaves no file and exits 1.
	f.inj.Add(faults.Rule{Path: string(layer.Digest), Fault: faults.Corrupt()})
	bad := filepath.Join(t.TempDir(), "bad.tgz")
	code, _, errs = runCmd(t, "", "blob", f.host+"/app/x@"+string(layer.Digest), "-o", bad)
	if _, err := os.Stat(bad); code != 1 || err == nil {
		t.Errorf("corrupt blob: exit %d, file exists: %v (%s)", code, err == nil, errs)
	}
	// To stdout the bytes stream as they verify, all but the last read:
	// never the whole of wrong content.
	code, out, _ = runCmd(t, "", "blob", f.host+"/app/x@"+string(layer.Digest))
	if code != 1 || int64(len(out)) >= layer.Size {
		t.Errorf("corrupt blob to stdout: exit %d, %d of %d bytes written (want fewer)", code, len(out), layer.Size)
	}
	if _, err := os.Stat(bad + ".partial"); err == nil {
		t.Error("bytes that did not verify were kept to resume")
	}
	// catalog and tags.
	code, out, _ = runCmd(t, "", "catalog", f.host)
	if code != 0 || out != "app/x\napp/y\n" {
		t.Errorf("catalog: exit %d, %q", code, out)
	}
	code, out, _ = runCmd(t, "", "tags", f.host+"/app/y")
	if code != 0 || out != "v2\n" {
		t.Errorf("tags: exit %d, %q", code, out)
	}
	// referrers, filtered or not.
	for _, at := range []string{"", "application/vnd.example.sbom"} {
		args := []string{"referrers", f.host + "/app/x@" + string(f.img.Digest())}
		if at != "" {
			args = append(args, "--artifact-type", at)
		}
		code, out, errs = runCmd(t, "", args...)
		if code != 0 || !strings.Contains(out, string(f.artifact.Digest())) || !strings.Contains(out, "application/vnd.example.sbom") {
			t.Errorf("referrers %q: exit %d, %q %s", at, code, out, errs)
		}
	}
	code, out, _ = runCmd(t, "", "referrers", f.host+"/app/x@"+string(f.img.Digest()), "--artifact-type", "other/type")
	if code != 0 || out != "" {
		t.Errorf("referrers of another type: %q", out)
	}
}

func TestLayoutAsSource(t *testing.T) {
	f := newReadFixture(t)
	dir := t.TempDir()
	for _, ref := range []string{f.host + "/app/x:v1", f.host + "/app/x@" + string(f.artifact.Digest())} {
		if code, _, errs := runCmd(t, "", "pull", "-q", ref, dir); code != 0 {
			t.Fatalf("pull %s: %s", ref, errs)
		}
	}
	local := map[string][]string{
		"oci:":     {"oci:" + dir + ":v1"},
		"--layout": {"--layout", dir, "v1"},
	}
	for how, target := range local {
		code, out, errs := runCmd(t, "", append([]string{"manifest"}, target...)...)
		if code != 0 || out != string(f.idx.RawManifest()) {
			t.Errorf("%s manifest: exit %d %s", how, code, errs)
		}
		code, out, _ = runCmd(t, "", append([]string{"inspect", "--json", "-p", "linux/amd64"}, target...)...)
		if code != 0 || !strings.Contains(out, string(f.img.Digest())) {
			t.Errorf("%s inspect: exit %d %s", how, code, out)
		}
		code, out, _ = runCmd(t, "", append([]string{"config", "-p", "linux/amd64"}, target...)...)
		if code != 0 || !strings.Contains(out, `"architecture":"amd64"`) {
			t.Errorf("%s config: exit %d %q", how, code, out)
		}
	}
	code, out, _ := runCmd(t, "", "tags", "--layout", dir)
	if code != 0 || out != "v1\n" {
		t.Errorf("tags of a layout: exit %d %q", code, out)
	}
	// The artifact refers to the amd64 image; the artifact itself has none.
	code, out, errs := runCmd(t, "", "referrers", "--layout", dir, string(f.artifact.Digest()))
	if code != 0 || out != "" {
		t.Errorf("referrers of the artifact itself: exit %d %q %s", code, out, errs)
	}
	code, _, errs = runCmd(t, "", "manifest", "--layout", dir)
	if code != 2 || !strings.Contains(errs, "2 entries") {
		t.Errorf("manifest of a layout with two entries and no name: exit %d %q", code, errs)
	}
}

func TestLayoutEntriesDoNotCollide(t *testing.T) {
	ctx := context.Background()
	a, err := ocitest.Build(ocitest.Spec{Seed: 41})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ocitest.Build(ocitest.Spec{Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	srv := registry.NewServer()
	srv.AddRef("demo/sample", "v1", a)
	srv.AddRef("other/app", "v1", b)
	host := httpServer(t, srv)
	dir := t.TempDir()
	for _, ref := range []string{"/demo/sample:v1", "/other/app:v1", "/demo/sample:v1"} {
		if code, _, errs := runCmd(t, "", "pull", "-q", host+ref, dir); code != 0 {
			t.Fatalf("pull %s: %s", ref, errs)
		}
	}
	code, _, errs := runCmd(t, "", "pull", "-q", "--name", "stable", host+"/other/app:v1", dir)
	if code != 0 {
		t.Fatal(errs)
	}
	l, _ := oci.OpenLayout(dir)
	idx, _ := l.Index()
	if len(idx.Manifests) != 3 {
		t.Fatalf("layout has %d entries, want 3 (demo/sample:v1, other/app:v1, stable)", len(idx.Manifests))
	}
	for name, want := range map[string]digest.Digest{host + "/demo/sample:v1": a.Digest(), host + "/other/app:v1": b.Digest(), "stable": b.Digest()} {
		got, err := l.Read(ctx, name)
		if err != nil || got.Digest() != want {
			t.Errorf("entry %s: %v, want %s", name, err, want)
		}
	}
	for _, d := range idx.Manifests {
		if d.Annotations["io.containerd.image.name"] == "" || d.Annotations[v1.AnnotationRefName] == "" {
			t.Errorf("entry %s lacks a name: %v", d.Digest, d.Annotations)
		}
	}
}

func TestPlatformAllAndLists(t *testing.T) {
	f := newFixture(t, nil)
	dir := t.TempDir()
	code, _, errs := runCmd(t, "", "pull", "-q", "--platform", "linux/amd64,linux/arm/v7", f.host+"/app/x:v1", dir)
	if code != 0 {
		t.Fatal(errs)
	}
	l, _ := oci.OpenLayout(dir)
	ref, err := l.Read(context.Background(), "v1")
	sub, ok := ref.(*oci.Index)
	if err != nil || !ok || sub.Annotations()[oci.AnnotationSubsetOf] != string(f.idx.Digest()) {
		t.Fatalf("a list writes an index of those platforms, cut from the registry's: %v", err)
	}
	var named []string
	for _, d := range sub.Manifests() {
		named = append(named, oci.PlatformString(*d.Platform))
	}
	if strings.Join(named, " ") != "linux/amd64 linux/arm/v7" {
		t.Errorf("the layout's index names %v, want the two platforms pulled", named)
	}
	for _, p := range []string{"linux/amd64", "linux/arm/v7"} {
		pl, _ := oci.ParsePlatform(p)
		if _, err := oci.ImageForPlatform(context.Background(), ref, pl); err != nil {
			t.Errorf("%s in the layout: %v", p, err)
		}
	}
	// The same list again: one HEAD, nothing else.
	f.inj.Reset()
	code, _, errs = runCmd(t, "", "pull", "--platform", "linux/amd64,linux/arm/v7", f.host+"/app/x:v1", dir)
	if code != 0 || !strings.Contains(errs, "up to date") || f.inj.Requests() != 1 {
		t.Errorf("re-pull of a list: exit %d, %d requests: %s", code, f.inj.Requests(), errs)
	}
	all := t.TempDir()
	if code, _, errs := runCmd(t, "", "pull", "-q", "-p", "all", f.host+"/app/x:v1", all); code != 0 {
		t.Fatal(errs)
	}
	la, _ := oci.OpenLayout(all)
	refAll, _ := la.Read(context.Background(), "v1")
	if err := verifyLocal(context.Background(), la, refAll, nil); err != nil {
		t.Errorf("--platform all: %v", err)
	}
	code, _, errs = runCmd(t, "", "pull", "--format", "docker-archive", "-p", "all", f.host+"/app/x:v1", filepath.Join(t.TempDir(), "x.tar"))
	if code != 2 {
		t.Errorf("docker-archive of all platforms: exit %d %s", code, errs)
	}
}

// TestRepullIsOneRequest: an up-to-date re-pull of a 100-layer image is
// one HEAD, plus the token it needs.
func TestRepullIsOneRequest(t *testing.T) {
	img, err := ocitest.Build(ocitest.Spec{Seed: 100, Layers: 100, LayerSize: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range []bool{false, true} {
		srv := registry.NewServer()
		if auth {
			srv.Auth = &registry.ServerAuth{Anonymous: []string{"*"}}
		}
		srv.AddRef("big/img", "v1", img)
		var mu sync.Mutex
		var seen []string
		host := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Method+" "+r.URL.Path)
			mu.Unlock()
			srv.ServeHTTP(w, r)
		}))
		dir := t.TempDir()
		if code, _, errs := runCmd(t, "", "pull", "-q", host+"/big/img:v1", dir); code != 0 {
			t.Fatal(errs)
		}
		mu.Lock()
		first := len(seen)
		seen = nil
		mu.Unlock()
		code, out, errs := runCmd(t, "", "pull", host+"/big/img:v1", dir)
		if code != 0 || !strings.Contains(errs, "up to date") {
			t.Fatalf("re-pull: exit %d %s %s", code, out, errs)
		}
		mu.Lock()
		var manifests, other []string
		for _, s := range seen {
			switch {
			case strings.HasPrefix(s, "HEAD ") && strings.Contains(s, "/manifests/"):
				manifests = append(manifests, s)
			case strings.HasPrefix(s, "GET /token") && auth:
			default:
				other = append(other, s)
			}
		}
		mu.Unlock()
		wantHeads := 1
		if auth {
			wantHeads = 2 // the challenged one and the one with the token
		}
		if len(manifests) != wantHeads || len(other) != 0 {
			t.Errorf("auth=%v: re-pull made %q besides %q (first pull: %d requests)", auth, other, manifests, first)
		}
	}
}

func TestProgressEstimateAndResumed(t *testing.T) {
	if got := totalLine(0, 1, 1<<20, 11<<20, 0, float64(1<<20)); !strings.Contains(got, "10s left") {
		t.Errorf("1 of 11 MiB at 1 MiB/s: %q, want 10s left", got)
	}
	var out bytes.Buffer
	p := newProgress(&out, false)
	p.live = true
	d := v1.Descriptor{Digest: digest.FromString("r"), Size: 100 << 20}
	p.start = time.Now().Add(-time.Second)
	p.update(oci.BlobProgress{Descriptor: d, Complete: 90 << 20, Resumed: true})
	p.update(oci.BlobProgress{Descriptor: d, Complete: 91 << 20})
	w := v1.Descriptor{Digest: digest.FromString("w"), Size: 1 << 20}
	p.update(oci.BlobProgress{Descriptor: w, Waiting: true})
	p.mu.Lock()
	p.redraw()
	p.mu.Unlock()
	frame := out.String()
	for _, want := range []string{"(90.0 MiB resumed)", "waiting: another process"} {
		if !strings.Contains(frame, want) {
			t.Errorf("frame lacks %q: %q", want, frame)
		}
	}
	// About 1 MiB moved in about a second: not 91 MiB/s.
	m := regexp.MustCompile(`, ([0-9.]+) (B|KiB|MiB|GiB)/s,`).FindStringSubmatch(frame)
	if m == nil {
		t.Fatalf("no speed in %q", frame)
	}
	if v, _ := strconv.ParseFloat(m[1], 64); m[2] == "GiB" || m[2] == "MiB" && v > 1.5 {
		t.Errorf("speed %s %s/s counts the resumed prefix (1 MiB moved in 1 s)", m[1], m[2])
	}
	p.stop()
}

func TestVerboseRetriesAndRequests(t *testing.T) {
	f := newFixture(t, nil)
	f.inj.Add(faults.Rule{Path: "/manifests/", Times: 1, Fault: faults.Status(http.StatusServiceUnavailable, "")})
	code, _, errs := runCmd(t, "", "digest", "-v", f.host+"/app/x:v1")
	if code != 0 {
		t.Fatal(errs)
	}
	for _, want := range []string{"retrying in", "503", "HEAD http://" + f.host + "/v2/app/x/manifests/v1 200"} {
		if !strings.Contains(errs, want) {
			t.Errorf("--verbose stderr lacks %q:\n%s", want, errs)
		}
	}
	// A closed port says what it retries.
	code, _, errs = runCmd(t, "", "digest", "--verbose", "--timeout", "2s", "127.0.0.1:1/app/x:v1")
	if code != 1 || !strings.Contains(errs, "retrying in") || !strings.Contains(errs, "connection refused") {
		t.Errorf("closed port: exit %d %s", code, errs)
	}
	for _, line := range strings.Split(errs, "\n") {
		if strings.Count(line, "/manifests/v1") > 1 {
			t.Errorf("a line names the request twice: %q", line)
		}
	}
}

func TestRateLimitAllowanceAndError(t *testing.T) {
	idx, _ := sampleIndex(context.Background(), nil)
	srv := registry.NewServer()
	srv.AddRef("library/app", "v1", idx)
	host := httpServer(t, &faults.PullLimit{Next: srv, Limit: 2, Window: 6 * time.Hour, Source: "192.0.2.9"})
	code, _, errs := runCmd(t, "", "manifest", "-v", host+"/library/app:v1")
	if code != 0 || !strings.Contains(errs, "pull allowance") || !strings.Contains(errs, "1 of 2 pulls left") {
		t.Errorf("allowance: exit %d %s", code, errs)
	}
	runCmd(t, "", "manifest", host+"/library/app:v1")
	code, _, errs = runCmd(t, "", "manifest", host+"/library/app:v1")
	if code != 1 || !strings.Contains(errs, "0 of 2 pulls left") || !strings.Contains(errs, "resets at") || !strings.Contains(errs, "rate-limiting") {
		t.Errorf("429: exit %d %s", code, errs)
	}
}

func TestServeLogsRequests(t *testing.T) {
	f := newFixture(t, nil)
	dir := t.TempDir()
	if code, _, errs := runCmd(t, "", "pull", "-q", f.host+"/app/x:v1", dir); code != 0 {
		t.Fatal(errs)
	}
	for _, quiet := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		lw := &lineWriter{line: make(chan string, 1)}
		errb := &syncBuffer{}
		args := []string{"serve", "--addr", "127.0.0.1:0", "--repo", "app/x", dir}
		if quiet {
			args = append(args, "-q")
		}
		done := make(chan int)
		go func() { done <- run(ctx, args, nil, lw, errb) }()
		var line string
		select {
		case line = <-lw.line:
		case <-time.After(10 * time.Second):
			t.Fatal("serve did not start")
		}
		addr := mirrorAddr(t, strings.Fields(line)[len(strings.Fields(line))-1])
		addr = strings.SplitN(addr, "/", 2)[0]
		if code, _, errs := runCmd(t, "", "digest", addr+"/app/x:v1"); code != 0 {
			t.Fatal(errs)
		}
		cancel()
		<-done
		logged := strings.Contains(errb.String(), "HEAD /v2/app/x/manifests/v1 200")
		if logged == quiet {
			t.Errorf("quiet=%v: request log %q", quiet, errb.String())
		}
		if !strings.Contains(line, "(3 manifests)") && !strings.Contains(line, "(1 manifest)") {
			t.Errorf("serve line %q", line)
		}
	}
}

func TestInterruptExitCodes(t *testing.T) {
	for sig, want := range map[os.Signal]int{os.Interrupt: 130, syscall.SIGTERM: 143} {
		ctx, cancel := context.WithCancelCause(context.Background())
		f := newFixture(t, nil)
		f.inj.Add(faults.Rule{Path: "/blobs/", Fault: faults.Stall(time.Hour)})
		var out, errb bytes.Buffer
		done := make(chan int)
		go func() {
			done <- run(ctx, []string{"pull", f.host + "/app/x:v1", t.TempDir()}, nil, &out, &errb)
		}()
		// Interrupted once the pull is stalled on a blob.
		for deadline := time.Now().Add(time.Minute); f.inj.RequestsTo("/blobs/") == 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the pull never reached a blob")
			}
		}
		cancel(interrupted{sig})
		if code := <-done; code != want || !strings.Contains(errb.String(), "run the same command to resume") || strings.Contains(errb.String(), "context canceled") {
			t.Errorf("%v: exit %d, %q", sig, code, errb.String())
		}
	}
}

// TestSignalEndsTheProcess sends a real SIGINT to the command.
func TestSignalEndsTheProcess(t *testing.T) {
	if runtime.GOOS == "windows" || testing.Short() {
		t.Skip("signals")
	}
	f := newFixture(t, nil)
	f.inj.Add(faults.Rule{Path: "/blobs/", Fault: faults.Stall(time.Hour)})
	cmd := exec.Command(os.Args[0], "pull", f.host+"/app/x:v1", t.TempDir())
	cmd.Env = append(os.Environ(), "OCIPULL_TEST_MAIN=1")
	var errb syncBuffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Signal once the pull is under way (a blob request has arrived, so
	// the handler is installed), however slowly the process started.
	for deadline := time.Now().Add(time.Minute); f.inj.RequestsTo("/blobs/") == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the pull never reached a blob: %s", errb.String())
		}
	}
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("after SIGINT: %v, %q", err, errb.String())
	}
}

func TestErrorTextNotDoubled(t *testing.T) {
	f := newFixture(t, nil)
	code, _, errs := runCmd(t, "", "pull", f.host+"/app/x:missing", t.TempDir())
	if code != 1 || strings.Count(errs, "app/x") > 2 || strings.Contains(errs, "pull "+f.host) {
		t.Errorf("error repeats the reference: %q", errs)
	}
	code, _, errs = runCmd(t, "", "pull", "--platform", "windows/amd64", f.host+"/app/x:v1", t.TempDir())
	if code != 1 {
		t.Errorf("a platform the image does not offer: exit %d, want 1 (%s)", code, errs)
	}
}

func TestMirrorAndTLSFlags(t *testing.T) {
	f := newFixture(t, nil)
	// A TLS mirror with a private certificate, in front of the fixture.
	idx := f.idx
	srv := registry.NewServer()
	srv.AddRef("app/x", "v1", idx)
	var mu sync.Mutex
	var nsSeen []string
	mirror := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		nsSeen = append(nsSeen, r.URL.Query().Get("ns"))
		mu.Unlock()
		srv.ServeHTTP(w, r)
	}))
	mirror.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted-CA case's handshake errors
	mirror.StartTLS()
	t.Cleanup(mirror.Close)
	caFile := filepath.Join(t.TempDir(), "mirror-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mirror.Certificate().Raw}), 0o644)

	f.inj.Reset()
	code, _, errs := runCmd(t, "", "pull", "-q", "--mirror", mirror.URL, "--ca-file", caFile, f.host+"/app/x:v1", t.TempDir())
	if code != 0 {
		t.Fatalf("pull through --mirror: %s", errs)
	}
	if n := f.inj.Requests(); n != 0 {
		t.Errorf("the registry saw %d requests; the mirror has everything", n)
	}
	mu.Lock()
	for _, ns := range nsSeen {
		if ns != f.host {
			t.Errorf("mirror saw ns=%q, want %q", ns, f.host)
		}
	}
	mu.Unlock()
	// Without the CA the mirror fails and the registry serves.
	f.inj.Reset()
	code, _, errs = runCmd(t, "", "pull", "-q", "--mirror", mirror.URL, f.host+"/app/x:v1", t.TempDir())
	if code != 0 || f.inj.Requests() == 0 {
		t.Errorf("untrusted mirror: exit %d, registry requests %d: %s", code, f.inj.Requests(), errs)
	}
	// --insecure skips verification, and says so.
	code, _, errs = runCmd(t, "", "digest", "--insecure", strings.TrimPrefix(mirror.URL, "https://")+"/app/x:v1")
	if code != 0 || !strings.Contains(errs, "warning: --insecure") {
		t.Errorf("--insecure: exit %d %s", code, errs)
	}
	// --cert-dir: Docker's HOST:PORT/ca.crt.
	certs := t.TempDir()
	mhost := strings.TrimPrefix(mirror.URL, "https://")
	os.MkdirAll(filepath.Join(certs, mhost), 0o755)
	os.WriteFile(filepath.Join(certs, mhost, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mirror.Certificate().Raw}), 0o644)
	code, out, errs := runCmd(t, "", "digest", "--cert-dir", certs, mhost+"/app/x:v1")
	if code != 0 || strings.TrimSpace(out) != string(idx.Digest()) {
		t.Errorf("--cert-dir: exit %d %s", code, errs)
	}
}

// TestDockerArchiveVerifiedAsWritten: a layer that does not verify leaves
// no tarball behind; a good pull writes one docker load reads.
func TestDockerArchiveVerifiedAsWritten(t *testing.T) {
	f := newFixture(t, nil)
	dest := filepath.Join(t.TempDir(), "app.tar")
	layer := firstLayer(t, f)
	f.inj.Add(faults.Rule{Path: string(layer.Digest), Fault: faults.Corrupt()})
	code, _, errs := runCmd(t, "", "pull", "--format", "docker-archive", "-p", "linux/amd64", f.host+"/app/x:v1", dest)
	if code != 1 || !strings.Contains(errs, "digest mismatch") {
		t.Errorf("corrupt layer: exit %d %s", code, errs)
	}
	if ents, _ := os.ReadDir(filepath.Dir(dest)); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	f.inj.Reset()
	code, out, errs := runCmd(t, "", "pull", "--format", "docker-archive", "-q", f.host+"/app/x:v1", dest)
	if code != 0 || !strings.HasPrefix(strings.TrimSpace(out), "sha256:") {
		t.Fatalf("exit %d %s", code, errs)
	}
	st, err := os.Stat(dest)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("tarball: %v %v", err, st)
	}
}

// A re-pull of one platform is one HEAD too (the entry records the index
// digest the reference resolved to); another platform pulls again.
func TestRepullOnePlatformIsOneRequest(t *testing.T) {
	f := newFixture(t, nil)
	dir := t.TempDir()
	if code, _, errs := runCmd(t, "", "pull", "-q", "-p", "linux/arm64", f.host+"/app/x:v1", dir); code != 0 {
		t.Fatal(errs)
	}
	f.inj.Reset()
	code, out, errs := runCmd(t, "", "pull", "-p", "linux/arm64", f.host+"/app/x:v1", dir)
	if code != 0 || !strings.Contains(errs, "up to date") || f.inj.Requests() != 1 {
		t.Errorf("re-pull of one platform: exit %d, %d requests: %s %s", code, f.inj.Requests(), out, errs)
	}
	f.inj.Reset()
	code, out, _ = runCmd(t, "", "pull", "-p", "linux/amd64", f.host+"/app/x:v1", dir)
	if code != 0 || strings.Contains(out, "up to date") || f.inj.RequestsTo("/blobs/") == 0 {
		t.Errorf("another platform: exit %d, %d blob requests: %s", code, f.inj.RequestsTo("/blobs/"), out)
	}
}

// What manifest and config show on a terminal: the same JSON, with
// nothing that drives the terminal.
func TestTerminalJSON(t *testing.T) {
	in := []byte("{\"a\":\"x\u009b2J\u202ey\xff\",\"b\":\"\u00e9\"}")
	got := terminalJSON(in)
	if want := "{\"a\":\"x\\u009b2J\\u202ey\\ufffd\",\"b\":\"\u00e9\"}\n"; got != want {
		t.Errorf("terminalJSON = %q, want %q", got, want)
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(got), &v); err != nil || v["a"] != "x\u009b2J\u202ey\ufffd" {
		t.Errorf("not the same JSON: %v %q", err, v["a"])
	}
}

// --username is the registry's: a mirror that asks for credentials gets
// none of them, falls through, and the registry gets them; a mirror with
// its own entry in Docker's config.json logs in with that.
func TestUsernameNotSentToMirror(t *testing.T) {
	f := newFixture(t, &registry.ServerAuth{Basic: true, Users: map[string]registry.ServerUser{"u": {Password: "p", Repositories: []string{"*"}}}})
	dockerConfig := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dockerConfig)
	srv := registry.NewServer()
	srv.Auth = &registry.ServerAuth{Basic: true, Users: map[string]registry.ServerUser{"m": {Password: "mp", Repositories: []string{"*"}}}}
	srv.AddRef("app/x", "v1", f.idx)
	var mu sync.Mutex
	var auths []string
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(mirror.Close)
	code, _, errs := runCmd(t, "p\n", "pull", "-q", "-u", "u", "--password-stdin", "--mirror", mirror.URL, f.host+"/app/x:v1", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(auths) == 0 {
		t.Fatal("the mirror was not asked")
	}
	for _, a := range auths {
		if a != "" {
			t.Errorf("the mirror got Authorization %q; --username is for the registry", a)
		}
	}
	if f.inj.RequestsTo("/manifests/") == 0 {
		t.Error("the registry was not asked after the mirror refused")
	}
	mu.Unlock()

	// With config.json naming the mirror, the mirror serves it all.
	mhost := strings.TrimPrefix(mirror.URL, "http://")
	cfg := `{"auths":{"` + mhost + `":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("m:mp")) + `"}}}`
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	f.inj.Reset()
	code, _, errs = runCmd(t, "p\n", "pull", "-q", "-u", "u", "--password-stdin", "--mirror", mirror.URL, f.host+"/app/x:v1", t.TempDir())
	mu.Lock()
	if code != 0 || f.inj.Requests() != 0 {
		t.Errorf("mirror with a config.json login: exit %d, %d registry requests (want 0): %s", code, f.inj.Requests(), errs)
	}
}

// A --mirror that garbles one blob does not fail the pull: the blob is
// fetched once more, from the registry.
func TestPullThroughMirrorWithABadCopy(t *testing.T) {
	f := newFixture(t, nil)
	srv := registry.NewServer()
	srv.AddRef("app/x", "v1", f.idx)
	img, err := oci.ImageForPlatform(context.Background(), f.idx, v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	bad := img.Layers()[0]
	inj := &faults.Injector{Next: srv}
	inj.Add(faults.Rule{Path: "/blobs/" + string(bad.Digest), Fault: faults.Corrupt()})
	mirror := httptest.NewServer(inj)
	t.Cleanup(mirror.Close)
	f.inj.Reset()
	dir := t.TempDir()
	code, _, errs := runCmd(t, "", "pull", "-q", "-p", "linux/amd64", "--mirror", mirror.URL, f.host+"/app/x:v1", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if n, m := f.inj.Requests(), f.inj.RequestsTo(string(bad.Digest)); n != 1 || m != 1 {
		t.Errorf("registry saw %d requests, %d for the garbled blob; want just that blob", n, m)
	}
	if inj.RequestsTo(string(bad.Digest)) != 1 {
		t.Errorf("the mirror was asked %d times for the blob it garbled, want 1", inj.RequestsTo(string(bad.Digest)))
	}
	if code, _, errs := runCmd(t, "", "pull", "-q", "-p", "linux/amd64", f.host+"/app/x:v1", dir); code != 0 {
		t.Errorf("re-pull (verifies what is on disk): %s", errs)
	}
}

// ocipull blob -o resumes: a .partial an interrupted run left is
// continued with a Range request and verified whole; an interrupt keeps
// it (newcomer item 4).
func TestBlobResumes(t *testing.T) {
	f := newFixture(t, nil)
	img, err := oci.ImageForPlatform(context.Background(), f.idx, oci.DefaultPlatform())
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers()[0]
	content, err := img.ReadBlob(context.Background(), layer, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "layer.tgz")
	if err := os.WriteFile(dest+".partial", content[:len(content)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	var ranges []string
	var mu sync.Mutex
	f.inj.Add(faults.Rule{Method: "GET", Path: string(layer.Digest), Fault: faults.FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		next.ServeHTTP(w, r)
	})})
	code, _, errs := runCmd(t, "", "blob", f.host+"/app/x@"+string(layer.Digest), "-o", dest)
	if b, err := os.ReadFile(dest); code != 0 || err != nil || digest.FromBytes(b) != layer.Digest {
		t.Fatalf("resumed blob: exit %d, %v %s", code, err, errs)
	}
	if len(ranges) != 1 || !strings.HasPrefix(ranges[0], fmt.Sprintf("bytes=%d-", len(content)/2)) {
		t.Errorf("blob requests: %q, want one Range from the partial's end", ranges)
	}
	// An interrupt keeps what landed.
	f = newFixture(t, nil)
	dest2 := filepath.Join(t.TempDir(), "again.tgz")
	f.inj.Add(faults.Rule{Method: "GET", Path: string(layer.Digest), Fault: faults.StallAfter(1000, time.Hour)})
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		done <- run(ctx, []string{"blob", f.host + "/app/x@" + string(layer.Digest), "-o", dest2}, nil, io.Discard, &errb)
	}()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if st, err := os.Stat(dest2 + ".partial"); err == nil && st.Size() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing landed")
		}
	}
	cancel(interrupted{os.Interrupt})
	if code := <-done; code != 130 || !strings.Contains(errb.String(), "resume") {
		t.Errorf("interrupt: exit %d, %s", code, errb.String())
	}
	if st, err := os.Stat(dest2 + ".partial"); err != nil || st.Size() == 0 {
		t.Errorf("the interrupted download's partial file is gone: %v", err)
	}
}

// tags --help describes only what tags takes (newcomer item 8: it spoke
// of an entry NAME argument).
func TestTagsHelpHasNoName(t *testing.T) {
	code, out, _ := runCmd(t, "", "tags", "--help")
	if code != 0 || strings.Contains(out, "names an entry") || !strings.Contains(out, "--layout DIR") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// A layout entry recorded under any spelling of a Docker Hub name (as
// earlier versions wrote registry-1.docker.io/..., as containerd writes
// docker.io/library/...) is found by every spelling (hermetic item 3).
func TestLayoutNamesAnySpelling(t *testing.T) {
	f := newFixture(t, nil)
	dir := t.TempDir()
	l, err := oci.CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(context.Background(), "3.20", f.idx, &oci.WriteOptions{ImageName: "registry-1.docker.io/library/alpine:3.20"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(context.Background(), "3.20", f.idx, &oci.WriteOptions{ImageName: "ghcr.io/other/alpine:3.20"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alpine:3.20", "docker.io/alpine:3.20", "docker.io/library/alpine:3.20", "registry-1.docker.io/library/alpine:3.20"} {
		code, out, errs := runCmd(t, "", "digest", "oci:"+dir+":"+name)
		if code != 0 || strings.TrimSpace(out) != string(f.idx.Digest()) {
			t.Errorf("%s: exit %d %q %s", name, code, out, errs)
		}
	}
}
