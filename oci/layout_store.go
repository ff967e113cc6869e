package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// The methods in this file are what a long-running owner of a layout (the
// pull-through cache) needs besides reading and writing content: list
// what is stored, stat it, mark it used, remove it under the layout's
// locks, follow a landing as it grows, and serialise store-wide work
// with other processes. None of them builds a path from anything but a
// validated digest, and every file they open is opened as the rest of
// the layout's files are (no symlinks followed, regular files only).

// BlobInfo describes one file under blobs/: stored content, or the
// .partial file of a landing.
type BlobInfo struct {
	Digest  digest.Digest
	Size    int64
	ModTime time.Time
	// Partial marks a landing's file, not content: its bytes are not
	// verified and it may be growing.
	Partial bool
}

// StatBlob describes the stored content d (not a landing of it): its
// size as on disk and its modification time, which [Layout.TouchBlob]
// moves. The content is not verified here ([Layout.Blob] verifies). The
// error wraps [ErrNotFound] when the layout does not hold d, and
// [ErrNotRegular] when its name holds something other than a regular
// file.
func (l *Layout) StatBlob(_ context.Context, d digest.Digest) (BlobInfo, error) {
	if err := ValidateDigest(d); err != nil {
		return BlobInfo{}, err
	}
	st, err := l.fs.lstat(blobRel(d))
	if err != nil {
		return BlobInfo{}, l.notFound(v1.Descriptor{Digest: d}, err)
	}
	if !st.Mode().IsRegular() {
		return BlobInfo{}, fmt.Errorf("layout %s: blob %s: %w (%s)", l.dir, d, ErrNotRegular, st.Mode().Type())
	}
	return BlobInfo{Digest: d, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// Blobs yields every regular file under blobs/<algorithm>/ whose name is
// a valid digest of that algorithm (content) or such a name with
// ".partial" (a landing), in no particular order. Other names are
// skipped; an unreadable directory is yielded as an error, once, last.
func (l *Layout) Blobs(ctx context.Context) iter.Seq2[BlobInfo, error] {
	return func(yield func(BlobInfo, error) bool) {
		algs, err := l.fs.readDir("blobs")
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				yield(BlobInfo{}, fmt.Errorf("layout %s: %w", l.dir, err))
			}
			return
		}
		for _, a := range algs {
			if !a.IsDir() || !digest.Algorithm(a.Name()).Available() {
				continue
			}
			ents, err := l.fs.readDir("blobs/" + a.Name())
			if err != nil {
				yield(BlobInfo{}, fmt.Errorf("layout %s: %w", l.dir, err))
				return
			}
			for _, e := range ents {
				if ctx.Err() != nil {
					yield(BlobInfo{}, ctx.Err())
					return
				}
				name, partial := strings.CutSuffix(e.Name(), ".partial")
				d := digest.NewDigestFromEncoded(digest.Algorithm(a.Name()), name)
				if !e.Type().IsRegular() || ValidateDigest(d) != nil {
					continue
				}
				info, err := e.Info()
				if err != nil {
					continue // removed since the listing
				}
				if !yield(BlobInfo{Digest: d, Size: info.Size(), ModTime: info.ModTime(), Partial: partial}, nil) {
					return
				}
			}
		}
	}
}

// TouchBlob sets the stored content d's modification time to t, so that
// several processes sharing the layout agree on what was used last.
func (l *Layout) TouchBlob(_ context.Context, d digest.Digest, t time.Time) error {
	if err := ValidateDigest(d); err != nil {
		return err
	}
	st, err := l.fs.lstat(blobRel(d))
	if err != nil {
		return l.notFound(v1.Descriptor{Digest: d}, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("layout %s: blob %s: %w", l.dir, d, ErrNotRegular)
	}
	return l.fs.root.Chtimes(blobRel(d), t, t)
}

// RemoveBlob removes the stored content d, waiting (as long as ctx allows)
// for a landing of d by this Layout value to end first. Readers that have
// the file open keep reading it. Removing content that is not there is
// not an error.
func (l *Layout) RemoveBlob(ctx context.Context, d digest.Digest) error {
	if err := ValidateDigest(d); err != nil {
		return err
	}
	unlock, err := l.lockBlob(ctx, d)
	if err != nil {
		return err
	}
	defer unlock()
	l.forgetVerified(d)
	if err := l.fs.remove(blobRel(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("layout %s: %w", l.dir, err)
	}
	return nil
}

// RemoveAbandoned removes the .partial file of d when no landing holds it
// (in this process or another) and it was last written before
// olderThan, reporting whether it did. An abandoned partial file is what
// a landing that failed or was killed leaves for a later one to resume.
func (l *Layout) RemoveAbandoned(ctx context.Context, d digest.Digest, olderThan time.Time) (bool, error) {
	if err := ValidateDigest(d); err != nil {
		return false, err
	}
	// A landing of this Layout value holds the blob's lock for as long as
	// it runs: it is not abandoned, and is not waited for.
	unlock, busy := l.tryLockBlob(d)
	if busy != nil {
		return false, nil
	}
	defer unlock()
	partial := blobRel(d) + ".partial"
	f, err := l.fs.openRegular(partial, os.O_RDWR)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	defer f.Close()
	free, err := tryLock(f, true)
	if err != nil || !free {
		return false, err // a landing holds it
	}
	st, err := f.Stat()
	if err != nil || !st.ModTime().Before(olderThan) {
		return false, err
	}
	if named, err := l.fs.lstat(partial); err != nil || !os.SameFile(st, named) {
		return false, nil
	}
	if err := l.fs.remove(partial); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}

// Exclusive runs fn while holding the layout's store-wide lock, which
// every process sharing the layout respects (where the system has flock):
// for work that must not run twice at once across them, such as keeping
// the store within a size cap. It waits as long as ctx allows.
func (l *Layout) Exclusive(ctx context.Context, fn func() error) error {
	f, err := l.fs.openPartialFile(".ocipull.lock")
	if err != nil {
		return fmt.Errorf("layout %s: %w", l.dir, err)
	}
	defer f.Close()
	if err := lockFile(ctx, f, nil); err != nil {
		return fmt.Errorf("layout %s: lock: %w", l.dir, err)
	}
	return fn()
}

// GrowingBlob is a landing of one blob followed as it grows (see
// [Layout.FollowBlob]). Its bytes are not verified: a follower must hold
// back what it serves until the landing completes, and must not trust
// what it read if the landing is abandoned.
type GrowingBlob struct {
	f    *os.File
	l    *Layout
	d    digest.Digest
	done bool
}

// LandingState is what became of a followed landing.
type LandingState int

const (
	// Landing: a writer holds the landing and it may grow.
	Landing LandingState = iota
	// Landed: the file followed is now the stored content, complete and
	// verified by its writer.
	Landed
	// Abandoned: no writer holds the file followed, or it was replaced or
	// removed (its content did not verify); what was read from it must be
	// discarded.
	Abandoned
)

// FollowBlob opens the landing of d in progress, by this process or
// another, to read it as it grows. The error wraps [ErrNotFound] when no
// .partial file exists. A .partial file that no writer holds is returned
// too; [GrowingBlob.Progress] reports it Abandoned.
func (l *Layout) FollowBlob(_ context.Context, d digest.Digest) (*GrowingBlob, error) {
	if err := ValidateDigest(d); err != nil {
		return nil, err
	}
	if err := l.checkBlobDir(d); err != nil {
		return nil, err
	}
	f, err := l.fs.openRegular(blobRel(d)+".partial", os.O_RDONLY)
	if err != nil {
		return nil, l.notFound(v1.Descriptor{Digest: d}, err)
	}
	return &GrowingBlob{f: f, l: l, d: d}, nil
}

// ReadAt reads landed bytes; reading past what has landed returns io.EOF.
func (g *GrowingBlob) ReadAt(p []byte, off int64) (int, error) { return g.f.ReadAt(p, off) }

// WriteRangeTo writes n landed bytes from offset off to w, as
// io.Copy from the file: to a network connection (or a net/http response)
// they go with sendfile(2), from the page cache, without a copy through
// user space. Fewer than n bytes landed is an error (io.ErrUnexpectedEOF).
func (g *GrowingBlob) WriteRangeTo(w io.Writer, off, n int64) (int64, error) {
	if _, err := g.f.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	k, err := io.CopyN(w, g.f, n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return k, err
}

// Close releases the file.
func (g *GrowingBlob) Close() error { return g.f.Close() }

// Progress reports how many bytes have landed in the file followed and
// what the landing's state is.
func (g *GrowingBlob) Progress() (int64, LandingState, error) {
	st, err := g.f.Stat()
	if err != nil {
		return 0, Abandoned, err
	}
	path := blobRel(g.d)
	if named, err := g.l.fs.lstat(path); err == nil && os.SameFile(st, named) {
		return st.Size(), Landed, nil
	}
	named, err := g.l.fs.lstat(path + ".partial")
	if err != nil || !os.SameFile(st, named) {
		return st.Size(), Abandoned, nil
	}
	held, err := lockHeld(g.f)
	if err != nil {
		return st.Size(), Abandoned, err
	}
	if !held {
		// Renamed into place between the two looks, or left behind.
		if named, err := g.l.fs.lstat(path); err == nil && os.SameFile(st, named) {
			return st.Size(), Landed, nil
		}
		return st.Size(), Abandoned, nil
	}
	return st.Size(), Landing, nil
}

// forgetVerified drops what the Layout remembers of having verified d.
func (l *Layout) forgetVerified(d digest.Digest) {
	l.verifiedMu.Lock()
	delete(l.verified, d)
	l.verifiedMu.Unlock()
}

// rememberVerified records that the file at path is d's content, verified
// (it was just landed and verified): its first serve does not hash it again.
func (l *Layout) rememberVerified(d digest.Digest, rel string) {
	st, err := l.fs.lstat(rel)
	if err != nil || !st.Mode().IsRegular() {
		return
	}
	l.verifiedMu.Lock()
	if l.verified == nil {
		l.verified = map[digest.Digest]fileStamp{}
	}
	l.verified[d] = stampOf(st)
	l.verifiedMu.Unlock()
}

var _ io.ReaderAt = (*GrowingBlob)(nil)

// UpdateIndex rewrites index.json with what fn makes of it, atomically,
// under the directory's lock (other processes' updates are not lost). fn
// may change idx.Manifests only; each entry it leaves must be a valid
// descriptor. When fn returns an error nothing is written.
func (l *Layout) UpdateIndex(ctx context.Context, fn func(idx *v1.Index) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	dir, err := l.fs.root.Open(".")
	if err != nil {
		return fmt.Errorf("layout %s: %w", l.dir, err)
	}
	defer dir.Close()
	if err := lockFile(ctx, dir, nil); err != nil {
		return fmt.Errorf("layout %s: lock: %w", l.dir, err)
	}
	idx, err := l.Index()
	if err != nil {
		return err
	}
	if err := fn(&idx); err != nil {
		return err
	}
	for i, d := range idx.Manifests {
		if err := ValidateDescriptor(d); err != nil {
			return fmt.Errorf("layout %s: index.json: manifests[%d]: %w", l.dir, i, err)
		}
	}
	return l.writeIndex(idx)
}
