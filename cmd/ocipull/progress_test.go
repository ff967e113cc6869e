package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

func TestLiveProgress(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, false)
	p.live = true // as on a terminal
	a := v1.Descriptor{Digest: digest.FromString("a"), Size: 4 << 20}
	b := v1.Descriptor{Digest: digest.FromString("b"), Size: 1 << 20}
	p.update(oci.BlobProgress{Descriptor: a, Complete: 1 << 20})
	p.update(oci.BlobProgress{Descriptor: b, Complete: 1 << 20, Done: true})
	p.mu.Lock()
	p.redraw()
	p.mu.Unlock()
	frame := out.String()
	for _, want := range []string{"25.0%", "1.0 MiB / 4.0 MiB", "total 1/2 blobs", "2.0 MiB / 5.0 MiB", "left"} {
		if !strings.Contains(frame, want) {
			t.Errorf("live frame lacks %q:\n%q", want, frame)
		}
	}
	// The next frame moves the cursor back over the previous one.
	out.Reset()
	p.update(oci.BlobProgress{Descriptor: a, Complete: 4 << 20, Done: true})
	p.mu.Lock()
	p.redraw()
	p.mu.Unlock()
	if !strings.HasPrefix(out.String(), "\x1b[2A") || !strings.Contains(out.String(), "total 2/2 blobs") {
		t.Errorf("second frame: %q", out.String())
	}
	p.stop()
}

func TestPlainProgress(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, false)
	d := v1.Descriptor{Digest: digest.FromString("a"), Size: 2048}
	p.update(oci.BlobProgress{Descriptor: d, Complete: 1024})
	p.update(oci.BlobProgress{Descriptor: d, Complete: 2048, Done: true})
	p.update(oci.BlobProgress{Descriptor: d, Complete: 2048, Done: true})
	p.stop()
	if got := out.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, "2.0 KiB downloaded") {
		t.Errorf("got %q, want one line for the finished blob", got)
	}
	var quiet bytes.Buffer
	q := newProgress(&quiet, true)
	q.update(oci.BlobProgress{Descriptor: d, Complete: 2048, Done: true})
	q.stop()
	if quiet.Len() != 0 {
		t.Errorf("quiet printed %q", quiet.String())
	}
}

// A note (a retry on stderr, on the same terminal) goes above the live
// block, which is redrawn under it.
func TestProgressNoteAboveLiveBlock(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, false)
	p.live = true
	d := v1.Descriptor{Digest: digest.FromString("n"), Size: 1 << 20}
	p.update(oci.BlobProgress{Descriptor: d, Complete: 1 << 19})
	p.mu.Lock()
	p.redraw()
	p.mu.Unlock()
	out.Reset()
	p.note("retrying in 250ms after: 503")
	got := out.String()
	if !strings.HasPrefix(got, "\x1b[2A\x1b[Jretrying in 250ms after: 503\n") || !strings.Contains(got, "50.0%") {
		t.Errorf("note: %q", got)
	}
	p.stop()
}
