package oci

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestLandPipelinedWriteFailureAborts: when the file refuses a write, the
// pipeline returns that error, cancels the read still blocked on the
// network (here a pipe that sends 3 MiB and then nothing), and leaves no
// goroutine behind.
func TestLandPipelinedWriteFailureAborts(t *testing.T) {
	content := make([]byte, 16<<20)
	rand.Read(content)
	desc := v1.Descriptor{Digest: digest.FromBytes(content), Size: int64(len(content))}
	pr, pw := io.Pipe()
	go func() {
		pw.Write(content[:3<<20])
		// ... and then the peer stalls.
	}()
	path := filepath.Join(t.TempDir(), "blob.partial")
	os.WriteFile(path, nil, 0o644)
	ro, err := os.Open(path) // read-only: every write fails
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	vr, _ := NewVerifyReader(pr, desc)
	l := &landing{f: ro, report: func(BlobProgress) {}}
	errAborted := errors.New("aborted")
	done := make(chan error, 1)
	go func() { done <- landPipelined(l, vr, func() { pr.CloseWithError(errAborted) }, false) }()
	// A pipeline that does not return hangs here until the test's
	// deadline, which names this test.
	err = <-done
	var pe *os.PathError
	if !errors.As(err, &pe) || errors.Is(err, errAborted) {
		t.Fatalf("got %v, want the write's error", err)
	}
}

// TestLandPipelinedWithholdsBadEnd: content of the right size that hashes
// to another digest fails with ErrDigestMismatch, and its last buffer never
// reaches the file.
func TestLandPipelinedWithholdsBadEnd(t *testing.T) {
	content := make([]byte, 9<<20+1234)
	rand.Read(content)
	desc := v1.Descriptor{Digest: digest.FromBytes(content), Size: int64(len(content))}
	lying := append([]byte(nil), content...)
	lying[len(lying)-1] ^= 1
	path := filepath.Join(t.TempDir(), "blob.partial")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	l := &landing{f: f, behind: &writeBehind{}, report: func(BlobProgress) {}}
	vr, _ := NewVerifyReader(io.NopCloser(bytes.NewReader(lying)), desc)
	if err := landPipelined(l, vr, func() {}, false); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("got %v", err)
	}
	l.close()
	st, _ := os.Stat(path)
	if st.Size() != 9<<20 {
		t.Errorf("file holds %d bytes; want the 9 verified MiB without the bad last buffer", st.Size())
	}
}
