package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry/faults"
)

// pty is a pseudo-terminal: the command writes to term as it would to
// the user's terminal; what it wrote is read from the other side.
type pty struct {
	term *os.File
	mu   sync.Mutex
	seen bytes.Buffer
	done chan struct{}
}

func openPTY(t *testing.T) *pty {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	ioctl := func(req uintptr, arg unsafe.Pointer) syscall.Errno {
		_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), req, uintptr(arg))
		return errno
	}
	var unlock int32
	var n uint32
	if e := ioctl(syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); e != 0 {
		master.Close()
		t.Skipf("unlockpt: %v", e)
	}
	if e := ioctl(syscall.TIOCGPTN, unsafe.Pointer(&n)); e != 0 {
		master.Close()
		t.Skipf("ptsname: %v", e)
	}
	term, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Skipf("open the terminal side: %v", err)
	}
	p := &pty{term: term, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			p.mu.Lock()
			p.seen.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { term.Close(); master.Close(); <-p.done })
	return p
}

// output closes the terminal side and returns all that was written to it.
func (p *pty) output() string {
	p.term.Close()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen.String()
}

func TestTerminalDetection(t *testing.T) {
	p := openPTY(t)
	t.Setenv("TERM", "xterm")
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	regular, err := os.Create(t.TempDir() + "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()
	for _, c := range []struct {
		name string
		w    io.Writer
		want bool
	}{{"pty", p.term, true}, {"/dev/null", devNull, false}, {"pipe", w, false}, {"file", regular, false}, {"buffer", &bytes.Buffer{}, false}} {
		if got := isTerminal(c.w); got != c.want {
			t.Errorf("isTerminal(%s) = %v, want %v", c.name, got, c.want)
		}
	}
	t.Setenv("TERM", "dumb")
	if isTerminal(p.term) {
		t.Error("TERM=dumb is treated as a terminal")
	}
}

// "ocipull blob REF > /dev/null" verifies a blob and discards it; only a
// real terminal is refused.
func TestBlobToDevNullAndTerminal(t *testing.T) {
	t.Setenv("TERM", "xterm")
	f := newReadFixture(t)
	layer := f.img.Layers()[0]
	ref := f.host + "/app/x@" + string(layer.Digest)
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"blob", ref}, strings.NewReader(""), devNull, &errb); code != 0 {
		t.Errorf("blob > /dev/null: exit %d: %s", code, errb.String())
	}
	p := openPTY(t)
	errb.Reset()
	code := run(context.Background(), []string{"blob", ref}, strings.NewReader(""), p.term, &errb)
	if out := p.output(); code != 2 || !strings.Contains(errb.String(), "binary") || out != "" {
		t.Errorf("blob to a terminal: exit %d, stderr %q, %d bytes on the terminal; want exit 2 and nothing written", code, errb.String(), len(out))
	}
	// The layer's bytes are what -o writes; /dev/null got them verified.
	dest := t.TempDir() + "/l"
	if code, _, errs := runCmd(t, "", "blob", ref, "-o", dest); code != 0 {
		t.Fatal(errs)
	}
	if b, _ := os.ReadFile(dest); digest.FromBytes(b) != layer.Digest {
		t.Error("blob -o wrote other bytes")
	}
}

// On a terminal, retries are shown without --verbose, and a manifest is
// shown with nothing that drives the terminal.
func TestTerminalShowsRetriesAndSafeManifest(t *testing.T) {
	t.Setenv("TERM", "xterm")
	f := newReadFixture(t)
	f.inj.Add(faults.Rule{Path: "/manifests/", Times: 1, Fault: faults.Status(http.StatusServiceUnavailable, "")})
	p := openPTY(t)
	var out bytes.Buffer
	code := run(context.Background(), []string{"digest", f.host + "/app/x:v1"}, strings.NewReader(""), &out, p.term)
	errs := p.output()
	if code != 0 || !strings.Contains(errs, "retrying in") || !strings.Contains(errs, "503") {
		t.Errorf("digest with a 503 on a terminal: exit %d, terminal %q; want the retry shown", code, errs)
	}
	// Without a terminal and without --verbose, retries are quiet.
	f.inj.Add(faults.Rule{Path: "/manifests/", Times: 1, Fault: faults.Status(http.StatusServiceUnavailable, "")})
	code, _, quiet := runCmd(t, "", "digest", f.host+"/app/x:v1")
	if code != 0 || strings.Contains(quiet, "retrying") {
		t.Errorf("digest with a 503 to a pipe: exit %d, stderr %q; want no retry lines", code, quiet)
	}
	p = openPTY(t)
	var errb bytes.Buffer
	code = run(context.Background(), []string{"manifest", f.host + "/app/x:v1"}, strings.NewReader(""), p.term, &errb)
	shown := p.output()
	if code != 0 || !strings.Contains(shown, `"schemaVersion"`) || strings.ContainsAny(shown, "\x1b\x9b") {
		t.Errorf("manifest on a terminal: exit %d, %q (%s)", code, shown, errb.String())
	}
}
