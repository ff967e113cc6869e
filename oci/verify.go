package oci

import (
	"bytes"
	"crypto/sha256"
	_ "crypto/sha512" // registers sha512 for go-digest
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"

	"github.com/ocipull/registry/internal/safetext"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// copyBufferSize is the largest buffer [VerifyReader.WriteTo] reads
// through. Reads of 1 MiB let an HTTP body and SHA-256 run at their full
// speed; the 32 KiB of io.Copy's own buffer cost about half the throughput
// on loopback. Smaller blobs get a buffer of their own size class (32 KiB
// to 1 MiB, powers of two), so many small layers in flight do not each
// hold a megabyte.
const (
	copyBufferSize    = 1 << 20
	minCopyBufferSize = 32 << 10
	minReadSize       = 16 << 10
)

// copyBuffers holds one pool per size class, from minCopyBufferSize up.
var copyBuffers [6]sync.Pool

func getCopyBuffer(need int64) (*[]byte, int) {
	class, size := 0, minCopyBufferSize
	for int64(size) < need && size < copyBufferSize {
		class, size = class+1, size*2
	}
	if b, ok := copyBuffers[class].Get().(*[]byte); ok {
		return b, class
	}
	b := make([]byte, size)
	return &b, class
}

// ValidateDigest reports whether d is a digest this package accepts: the
// grammar of the OCI image spec with a registered algorithm, sha256 (64
// lower-case hex characters) or sha512 (128). Anything else is refused before
// any request is made. It is a hand-written check, without regexps or
// allocation: it runs several times for every blob a client reads.
func ValidateDigest(d digest.Digest) error {
	s := string(d)
	alg, enc, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("%w: digest %q: not algorithm:encoded", ErrInvalidDescriptor, truncate(s))
	}
	var want int
	switch alg {
	case "sha256":
		want = 64
	case "sha512":
		want = 128
	default:
		if err := d.Validate(); err != nil {
			return fmt.Errorf("%w: digest %q: %v", ErrInvalidDescriptor, truncate(s), err)
		}
		return fmt.Errorf("%w: digest %q: algorithm must be sha256 or sha512", ErrInvalidDescriptor, truncate(s))
	}
	if len(enc) != want || !isLowerHex(enc) {
		return fmt.Errorf("%w: digest %q: %s needs %d lower-case hex characters", ErrInvalidDescriptor, truncate(s), alg, want)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ValidateDescriptor checks what this package relies on in a descriptor: a
// media type, a valid digest ([ValidateDigest]), a size that is not negative,
// and, when data is embedded, data of exactly that size and digest.
func ValidateDescriptor(d v1.Descriptor) error {
	if d.MediaType == "" {
		return fmt.Errorf("%w: descriptor %s has no media type", ErrInvalidDescriptor, truncate(string(d.Digest)))
	}
	if err := ValidateDigest(d.Digest); err != nil {
		return err
	}
	if d.Size < 0 {
		return fmt.Errorf("%w: descriptor %s has negative size %d", ErrInvalidDescriptor, d.Digest, d.Size)
	}
	if d.Data != nil {
		if int64(len(d.Data)) != d.Size {
			return fmt.Errorf("%w: descriptor %s: embedded data is %d bytes, size says %d", ErrInvalidDescriptor, d.Digest, len(d.Data), d.Size)
		}
		if got := d.Digest.Algorithm().FromBytes(d.Data); got != d.Digest {
			return fmt.Errorf("%w: descriptor %s: embedded data has digest %s: %w", ErrInvalidDescriptor, d.Digest, got, ErrDigestMismatch)
		}
	}
	return nil
}

// VerifyReader is a stream that yields exactly the bytes a descriptor names.
// It hashes while reading and never yields more than the descriptor's size.
// When the content ends early, runs long, or hashes to another digest, Read
// returns an error wrapping [ErrSizeMismatch] or [ErrDigestMismatch] in
// place of [io.EOF], and the read that discovered it yields no bytes: a
// caller that stops at the first error never holds the final bytes of bad
// content. io.EOF is returned only after the digest matched.
//
// VerifyReader implements [io.WriterTo] with a 1 MiB buffer, so io.Copy from
// it runs at the speed of the network and the hash, not of a 32 KiB buffer.
//
// A stream that implements [VerifyFailedNotifier] is told when its bytes
// hash to another digest (a registry Client passes over the mirror that
// served them from then on).
type VerifyReader struct {
	r    io.Reader
	c    io.Closer
	desc v1.Descriptor
	h    hash.Hash
	n    int64
	err  error
}

// VerifyFailedNotifier is implemented by a stream that wants to know that
// the bytes it yielded did not match the digest they were read for: a
// [VerifyReader] calls VerifyFailed once, when it finds the mismatch (not
// for a short or long body). Streams that wrap another pass it on.
type VerifyFailedNotifier interface {
	VerifyFailed()
}

// NewVerifyReader wraps rc, which should yield the content desc names. Close
// closes rc. desc's digest must be valid ([ValidateDescriptor]).
func NewVerifyReader(rc io.ReadCloser, desc v1.Descriptor) (*VerifyReader, error) {
	if err := ValidateDigest(desc.Digest); err != nil {
		return nil, err
	}
	if desc.Size < 0 {
		return nil, fmt.Errorf("%w: descriptor %s has negative size %d", ErrInvalidDescriptor, desc.Digest, desc.Size)
	}
	var h hash.Hash
	if desc.Digest.Algorithm() == digest.SHA256 {
		h = sha256.New()
	} else {
		h = desc.Digest.Algorithm().Hash()
	}
	return &VerifyReader{r: rc, c: rc, desc: desc, h: h}, nil
}

// Read implements io.Reader with the verification described on [VerifyReader].
func (v *VerifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	remaining := v.desc.Size - v.n
	if remaining == 0 {
		return 0, v.finish()
	}
	if int64(len(p)) > remaining {
		p = p[:remaining]
	}
	n, err := v.r.Read(p)
	return v.accept(p[:n], err)
}

// accept takes p, the next bytes of the content, and err, the error that
// came with them from the underlying stream (io.EOF when it ended there),
// and returns what Read returns for them: len(p) and nil, or 0 and the
// error that makes the content bad. p must not run past the size.
func (v *VerifyReader) accept(p []byte, err error) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n := len(p)
	if n > 0 {
		v.h.Write(p)
		v.n += int64(n)
	}
	if v.n == v.desc.Size {
		if ferr := v.finish(); ferr != io.EOF {
			return 0, ferr
		}
		return n, nil
	}
	if err == io.EOF {
		v.err = fmt.Errorf("blob %s: %w: got %d bytes, want %d: %w", v.desc.Digest, ErrSizeMismatch, v.n, v.desc.Size, io.ErrUnexpectedEOF)
		return 0, v.err
	}
	if err != nil {
		v.err = fmt.Errorf("blob %s: after %d of %d bytes: %w", v.desc.Digest, v.n, v.desc.Size, err)
		return 0, v.err
	}
	return n, nil
}

func (v *VerifyReader) finish() error {
	if v.err != nil {
		return v.err
	}
	got := digest.NewDigestFromBytes(v.desc.Digest.Algorithm(), v.h.Sum(nil))
	if got != v.desc.Digest {
		v.err = fmt.Errorf("blob %s: %w: content hashes to %s", v.desc.Digest, ErrDigestMismatch, got)
		if s, ok := v.c.(VerifyFailedNotifier); ok {
			s.VerifyFailed()
		}
		return v.err
	}
	v.err = io.EOF
	return io.EOF
}

// WriteTo implements io.WriterTo: it copies the verified content to w through
// a 1 MiB buffer and returns nil only when every byte was verified.
func (v *VerifyReader) WriteTo(w io.Writer) (int64, error) {
	bp, class := getCopyBuffer(v.desc.Size - v.n)
	defer copyBuffers[class].Put(bp)
	buf := *bp
	// A small blob is read a quarter at a time (at least minReadSize):
	// hashing each piece while the next arrives beat one read of the whole
	// on loopback, 100 blobs of 64 KiB in 0.90x the time (BENCHMARKS.md).
	if q := max((v.desc.Size-v.n)/4, minReadSize); q < int64(len(buf)) {
		buf = buf[:q]
	}
	var written int64
	for {
		n, err := v.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
			if m != n {
				return written, io.ErrShortWrite
			}
		}
		if err == io.EOF {
			return written, nil
		}
		if err != nil {
			return written, err
		}
	}
}

// verified reports whether the whole content has been read and matched.
func (v *VerifyReader) verified() bool { return v.err == io.EOF }

// Close closes the underlying stream.
func (v *VerifyReader) Close() error { return v.c.Close() }

// readAllVerified reads the content desc names from rc, up to limit bytes,
// verifies it and closes rc. A descriptor larger than limit is refused
// with [ErrTooLarge] before anything is read.
func readAllVerified(rc io.ReadCloser, desc v1.Descriptor, limit int64) ([]byte, error) {
	defer rc.Close()
	if desc.Size > limit {
		return nil, fmt.Errorf("blob %s: %w: size %d exceeds the limit of %d bytes", desc.Digest, ErrTooLarge, desc.Size, limit)
	}
	vr, err := NewVerifyReader(rc, desc)
	if err != nil {
		return nil, err
	}
	buf := bytes.NewBuffer(make([]byte, 0, desc.Size))
	if _, err := vr.WriteTo(buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// truncate shortens and sanitises untrusted strings before they go into
// error messages ([safetext.String]).
func truncate(s string) string { return safetext.String(s, 80) }
