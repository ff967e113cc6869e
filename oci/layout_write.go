package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	pathpkg "path"
	"path/filepath"
	"sync"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// WriteOptions tunes [Layout.Write]. The zero value works.
type WriteOptions struct {
	// Jobs is how many blobs are written at once. Zero or less means 4.
	Jobs int
	// MaxManifests and MaxManifestBytes bound the walk below the ref: how
	// many manifests, and how many bytes of them, are loaded (and held until
	// written). Zero means 10,000 manifests and 64 MiB.
	MaxManifests     int
	MaxManifestBytes int64
	// ImageName, when not empty, is the full reference the ref was read
	// from ("ghcr.io/org/app:v1"), recorded as io.containerd.image.name
	// beside the tag's org.opencontainers.image.ref.name, as containerd
	// and crane do: entries of different images with the same tag then
	// stay apart (see [Layout.Write]).
	ImageName string
	// Annotations are added to the index.json entry (after the ref name
	// and ImageName, which they cannot replace), as in recording where
	// the entry came from.
	Annotations map[string]string
	// Platforms, when not empty, selects the children of an index to
	// write: those whose platform can run where one of them is asked for
	// ([PlatformRank]; children without a platform, such as nested
	// indexes, are kept). The original index is stored, and the entry
	// names an index of the kept children only, annotated with the
	// original's digest ([AnnotationSubsetOf]): the layout never names
	// content it lacks, so any tool can copy it whole.
	Platforms []v1.Platform
	// Progress, when not nil, is told of each blob as it starts, as bytes
	// land and when it is done or skipped. It may be called from several
	// goroutines at once and must not block for long.
	Progress func(BlobProgress)
}

// BlobProgress reports on one blob during [Layout.Write].
type BlobProgress struct {
	// Descriptor names the blob.
	Descriptor v1.Descriptor
	// Complete is how many bytes are on disk, including a resumed prefix.
	Complete int64
	// Done is set once the blob is verified and in place.
	Done bool
	// Skipped is set (with Done) when the blob was already present and verified.
	Skipped bool
	// Resumed is set when a partial download of an earlier run was
	// continued; Complete then starts at the prefix already on disk.
	Resumed bool
	// Waiting is set while another writer (another process, or another
	// Layout value) holds the blob; the blob is reported again when it
	// lands or this writer takes over.
	Waiting bool
	// Landed, when not nil, holds the bytes this report adds: the blob's
	// bytes [Complete-len(Landed), Complete), as written to the landing
	// (not yet verified as a whole). It is valid only during the call: a
	// caller that keeps the bytes copies them. A follower of the landing
	// in the same process can serve them from memory instead of reading
	// the file back.
	Landed []byte
}

// Write stores ref and everything under it (child manifests and blobs) in
// the layout and records ref in index.json, under tag when tag is not
// empty (an entry with the same tag is replaced; earlier entries stay).
//
// Every blob and manifest is verified against its descriptor before it is
// renamed into place, content already present and verified is skipped, and
// blobs are fetched in parallel ([WriteOptions.Jobs]). A download that
// fails part-way leaves blobs/<alg>/<encoded>.partial; when the source is a
// [RangeSource] the next Write continues from it, verifying the whole. A
// blob whose content does not verify (a bad partial file, bytes garbled on
// the way, a mirror's wrong copy) is dropped and fetched once more from
// the start; a second failure is the error.
// Manifests are written after everything they name, and index.json last,
// so an interrupted Write never leaves index.json naming missing content.
// index.json and manifests are fsynced (on most filesystems that also
// flushes the blobs written before them); blobs are not fsynced one by
// one, because a blob that a crash garbled is found and replaced by the
// next Write, which re-hashes whatever is present before skipping it.
// Reads go to each ref's source under ctx.
//
// Blobs of 8 MiB and more (two at a time) are landed by three goroutines —
// read, verify, write — through a 16 MiB ring, so a large download runs at
// the speed of SHA-256 rather than of hashing plus writing; on Linux, on
// ext4, XFS, Btrfs and F2FS, those writes use O_DIRECT: they cost almost
// no CPU and do not evict the page cache, and the blob is not left cached
// either (a later read comes from disk).
func (l *Layout) Write(ctx context.Context, tag string, ref Ref, opts *WriteOptions) error {
	if opts == nil {
		opts = &WriteOptions{}
	}
	var manifests []Ref
	type blobJob struct {
		desc v1.Descriptor
		src  Source
	}
	var blobs []blobJob
	seenBlob := map[digest.Digest]bool{}
	lim := walkLimits{manifests: maxWalkManifests, bytes: maxWalkBytes}
	if len(opts.Platforms) > 0 {
		lim.keep = platformFilter(opts.Platforms)
	}
	if opts.MaxManifests > 0 {
		lim.manifests = opts.MaxManifests
	}
	if opts.MaxManifestBytes > 0 {
		lim.bytes = opts.MaxManifestBytes
	}
	err := walk(ctx, ref, lim, func(r Ref) error {
		manifests = append(manifests, r)
		if img, ok := r.(*Image); ok {
			for _, d := range img.Blobs() {
				if !seenBlob[d.Digest] {
					seenBlob[d.Digest] = true
					blobs = append(blobs, blobJob{d, img.Source()})
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}

	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		next     = make(chan blobJob)
		// pipelines holds a token per large blob landing through the
		// pipeline (see landPipelined).
		pipelines = make(chan struct{}, maxPipelines)
	)
	for i := 0; i < jobs && i < len(blobs); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				if err := l.writeBlob(ctx, j.src, j.desc, opts.Progress, landOptions{pipelines: pipelines, again: true, durable: true, direct: true}); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
				}
			}
		}()
	}
feed:
	for _, j := range blobs {
		select {
		case next <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := len(manifests) - 1; i >= 0; i-- {
		m := manifests[i]
		if err := l.writeContent(m.Descriptor(), m.RawManifest()); err != nil {
			return err
		}
	}
	top, err := l.subsetIndex(ref, lim.keep)
	if err != nil {
		return err
	}
	return l.addToIndex(ctx, top, tag, opts.ImageName, opts.Annotations)
}

// AnnotationSubsetOf, on an index a layout holds, names the index it was
// cut from: a write of some platforms of an index records an index of
// just those children (so the layout never names content it lacks) and
// the original's digest here, for provenance.
const AnnotationSubsetOf = "io.ocipull.index.subset-of"

// subsetIndex is what the layout's entry names for ref: ref itself, or,
// when keep left out some of an index's children, an index of the kept
// ones (stored now), annotated with the original's digest.
func (l *Layout) subsetIndex(ref Ref, keep func(v1.Descriptor) bool) (v1.Descriptor, error) {
	x, ok := ref.(*Index)
	if !ok || keep == nil {
		return ref.Descriptor(), nil
	}
	sub := x.index
	sub.Manifests = nil
	for _, d := range x.index.Manifests {
		if keep(d) {
			sub.Manifests = append(sub.Manifests, d)
		}
	}
	if len(sub.Manifests) == len(x.index.Manifests) {
		return ref.Descriptor(), nil
	}
	sub.Annotations = map[string]string{}
	for k, v := range x.index.Annotations {
		sub.Annotations[k] = v
	}
	sub.Annotations[AnnotationSubsetOf] = string(x.desc.Digest)
	raw, err := json.Marshal(sub)
	if err != nil {
		return v1.Descriptor{}, err
	}
	desc := v1.Descriptor{MediaType: x.desc.MediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if err := l.writeContent(desc, raw); err != nil {
		return v1.Descriptor{}, err
	}
	return desc, nil
}

// platformFilter selects an index's children for WriteOptions.Platforms:
// those matching one of ps, and those without a platform.
func platformFilter(ps []v1.Platform) func(v1.Descriptor) bool {
	return func(d v1.Descriptor) bool {
		if d.Platform == nil {
			return true
		}
		for _, p := range ps {
			if matchPlatform(p, *d.Platform) {
				return true
			}
		}
		return false
	}
}

// annotationImageName is containerd's (and crane's) annotation for the
// full reference of an index.json entry.
const annotationImageName = "io.containerd.image.name"

// addToIndex records desc in index.json under tag (and imageName): it
// replaces an entry with the same tag whose image name is the same or
// absent, and keeps every other.
func (l *Layout) addToIndex(ctx context.Context, desc v1.Descriptor, tag, imageName string, extra map[string]string) error {
	return l.UpdateIndex(ctx, func(idx *v1.Index) error {
		entry := v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size, ArtifactType: desc.ArtifactType}
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			name, image := d.Annotations[v1.AnnotationRefName], d.Annotations[annotationImageName]
			sameImage := image == "" || image == imageName
			if tag != "" && name == tag && sameImage {
				continue
			}
			if tag == "" && name == "" && d.Digest == desc.Digest && sameImage {
				continue
			}
			kept = append(kept, d)
		}
		if tag != "" || imageName != "" || len(extra) > 0 {
			entry.Annotations = map[string]string{}
			for k, v := range extra {
				entry.Annotations[k] = v
			}
			if tag != "" {
				entry.Annotations[v1.AnnotationRefName] = tag
			}
			if imageName != "" {
				entry.Annotations[annotationImageName] = imageName
			}
		}
		idx.Manifests = append(kept, entry)
		return nil
	})
}

// hasVerified reports whether path holds exactly the content desc names.
func (l *Layout) hasVerified(rel string, desc v1.Descriptor) bool {
	f, err := l.fs.openRegular(rel, os.O_RDONLY)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != desc.Size {
		return false
	}
	vr, err := NewVerifyReader(f, desc)
	if err != nil {
		return false
	}
	_, err = vr.WriteTo(io.Discard)
	return err == nil
}

// writeContent stores small content held in memory unless the layout
// already has it, verified. b must already be verified against desc: it is
// the raw bytes of a ref or a descriptor's embedded data (checked when the
// manifest was parsed), so it is not hashed again.
func (l *Layout) writeContent(desc v1.Descriptor, b []byte) error {
	if err := l.blobDir(desc.Digest); err != nil {
		return err
	}
	path := blobRel(desc.Digest)
	if l.hasVerified(path, desc) {
		return nil
	}
	return l.fs.writeFileAtomic(path, b)
}

// writeBlob lands one blob: skipped when present and verified, else
// downloaded (resuming a .partial when src can) under the blob's locks,
// verified and renamed into place.
// landOptions tune how writeBlob lands a blob: pipelines holds a token
// per pipelined landing; durable makes the blob durable before it is
// renamed into place (see landing.go).
type landOptions struct {
	pipelines chan struct{}
	durable   bool
	// direct writes a pipelined landing with direct I/O where the
	// filesystem allows (see landing.go); what goes through the page
	// cache instead (where it does not, a resumed landing, a small blob)
	// gets write-behind when the landing is durable.
	direct bool
	// again fetches content that did not verify once more (Layout.Write;
	// not WriteBlob, whose readers follow the one landing's partial file).
	again bool
}

func (l *Layout) writeBlob(ctx context.Context, src Source, desc v1.Descriptor, progress func(BlobProgress), lo landOptions) error {
	report := func(p BlobProgress) {
		if progress != nil {
			p.Descriptor = desc
			progress(p)
		}
	}
	if desc.Data != nil {
		if err := l.writeContent(desc, desc.Data); err != nil {
			return err
		}
		report(BlobProgress{Complete: desc.Size, Done: true})
		return nil
	}
	if err := l.blobDir(desc.Digest); err != nil {
		return err
	}
	path := blobRel(desc.Digest)
	if l.hasVerified(path, desc) {
		report(BlobProgress{Complete: desc.Size, Done: true, Skipped: true})
		return nil
	}
	unlock, err := l.lockBlob(ctx, desc.Digest)
	if err != nil {
		return err
	}
	defer unlock()
	err = l.landBlob(ctx, src, desc, report, lo)
	if lo.again && (errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrSizeMismatch)) && ctx.Err() == nil {
		// Content that did not verify was dropped. Fetch it once more:
		// a bit flipped on the way is not fatal, and a registry Client
		// passes over a mirror that served such bytes.
		err = l.landBlob(ctx, src, desc, report, lo)
	}
	return err
}

// landBlob downloads desc into its partial file (resuming it), verifies
// it and renames it into place; the caller holds the blob's lock. Content
// that does not verify is removed, so that a second call starts afresh.
func (l *Layout) landBlob(ctx context.Context, src Source, desc v1.Descriptor, report func(BlobProgress), lo landOptions) error {
	path := blobRel(desc.Digest)
	partial := path + ".partial"
	f, landed, err := l.openPartial(ctx, partial, path, desc, func() { report(BlobProgress{Waiting: true}) })
	if err != nil {
		return err
	}
	if landed {
		report(BlobProgress{Complete: desc.Size, Done: true, Skipped: true})
		return nil
	}
	// The pipelined landing cancels the download when a write fails.
	ctx, abort := context.WithCancel(ctx)
	defer abort()
	land := &landing{f: f, report: report}
	if lo.durable {
		land.behind = &writeBehind{}
	}
	vr, err := resumeDownload(ctx, src, desc, land)
	if err != nil {
		f.Close()
		return err
	}
	defer vr.Close()
	if err := l.landVerified(land, vr, partial, lo, abort); err != nil {
		land.close()
		if errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrSizeMismatch) {
			l.fs.remove(partial)
		}
		return err
	}
	if err := l.placeLanded(land, partial, path, lo.durable); err != nil {
		return err
	}
	l.rememberVerified(desc.Digest, path)
	report(BlobProgress{Complete: desc.Size, Done: true})
	return nil
}

// resumeDownload opens desc's content for a landing into land.f: from the
// partial file's length when src can resume (the prefix on disk is read
// back and verified with the rest), else from the start, truncating only
// what is there to drop. It sets land.skip.
func resumeDownload(ctx context.Context, src Source, desc v1.Descriptor, land *landing) (*VerifyReader, error) {
	f := land.f
	var offset, have int64
	if st, err := f.Stat(); err == nil {
		have = st.Size()
	}
	rs, canResume := src.(RangeSource)
	if canResume && have > 0 && have < desc.Size {
		offset = have
	}
	var remote io.ReadCloser
	var err error
	if offset > 0 {
		if remote, err = rs.BlobAt(ctx, desc, offset); err != nil {
			offset = 0
		}
	}
	if offset == 0 {
		if remote, err = src.Blob(ctx, desc); err != nil {
			return nil, err
		}
	}
	// Truncate only what is there to drop: on ext4, truncating a file to
	// zero (even an empty one) makes its close start writeback of
	// everything written since and wait for it, a quarter of a second per
	// gigabyte.
	if have > offset {
		if err := f.Truncate(offset); err != nil {
			remote.Close()
			return nil, err
		}
	}
	land.skip = offset
	land.report(BlobProgress{Complete: offset, Resumed: offset > 0})
	stream := &resumedStream{io.MultiReader(io.NewSectionReader(f, 0, offset), remote), remote, offset}
	vr, err := NewVerifyReader(stream, desc)
	if err != nil {
		remote.Close()
		return nil, err
	}
	return vr, nil
}

// resumedStream is a partial file's prefix followed by the source's
// stream for the rest.
type resumedStream struct {
	io.Reader
	remote io.ReadCloser
	prefix int64 // bytes from the partial file
}

func (s *resumedStream) Close() error { return s.remote.Close() }

// VerifyFailed passes VerifyReader's news on to the source's stream (see
// VerifyReader) when all the bytes came from it: with a prefix from disk,
// the fault may be the disk's.
func (s *resumedStream) VerifyFailed() {
	if r, ok := s.remote.(VerifyFailedNotifier); ok && s.prefix == 0 {
		r.VerifyFailed()
	}
}

// landVerified writes vr's verified content through land: pipelined for
// a large blob when a pipeline slot is free, else on this goroutine.
func (l *Layout) landVerified(land *landing, vr *VerifyReader, partial string, lo landOptions, abort func()) error {
	if vr.desc.Size >= pipelineMinSize {
		select {
		case lo.pipelines <- struct{}{}:
			defer func() { <-lo.pipelines }()
			return landPipelined(land, vr, abort, lo.direct)
		default:
		}
	}
	_, err := vr.WriteTo(&landingWriter{l: land})
	return err
}

// placeLanded renames a landed, verified partial file into place. A
// durable landing syncs the file's data first and the directory after
// (see durability); a landing that is not durable (the cache's: its blobs
// are verified again before they are first served after a restart) is
// only renamed, and a blob that a crash left short or garbled under its
// final name is found by that check, or by the next Write, which
// re-hashes what is present before skipping it.
func (l *Layout) placeLanded(land *landing, partial, path string, durable bool) error {
	if durable {
		if err := l.fs.durable.syncData(land.f); err != nil {
			land.close()
			return fmt.Errorf("%s: %w", l.fs.name(partial), err)
		}
	}
	if renameWhileLocked {
		if err := l.fs.durable.rename(partial, path); err != nil {
			land.close()
			return err
		}
		if err := land.close(); err != nil {
			return err
		}
	} else {
		if err := land.close(); err != nil {
			return err
		}
		if err := l.fs.durable.rename(partial, path); err != nil {
			return err
		}
	}
	if durable {
		return l.fs.durable.syncDir(pathpkg.Dir(path))
	}
	return nil
}

// lockBlob makes the writers of this Layout value land d one at a time:
// it waits (as long as ctx allows) while another is landing it, and
// returns the function that lets the next one in.
func (l *Layout) lockBlob(ctx context.Context, d digest.Digest) (unlock func(), err error) {
	for {
		unlock, busy := l.tryLockBlob(d)
		if busy == nil {
			return unlock, nil
		}
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// tryLockBlob is lockBlob without the wait: while another writer of this
// Layout value holds d, it returns the channel closed when that one lets
// go (and no unlock).
func (l *Layout) tryLockBlob(d digest.Digest) (unlock func(), busy <-chan struct{}) {
	l.blobMu.Lock()
	defer l.blobMu.Unlock()
	if held, ok := l.landing[d]; ok {
		return nil, held
	}
	if l.landing == nil {
		l.landing = map[digest.Digest]chan struct{}{}
	}
	done := make(chan struct{})
	l.landing[d] = done
	return func() {
		l.blobMu.Lock()
		delete(l.landing, d)
		l.blobMu.Unlock()
		close(done)
	}, nil
}

// openPartial opens (creating it if need be) and locks the .partial file of
// desc, for writers in other processes and other Layout values. When the
// lock had to be waited for, the writer that held it may have landed the
// blob (the file we opened is now the blob: landed is true, nothing is
// returned to write to; a .partial created meanwhile is removed) or removed
// a partial file of bad content (we open the new one).
func (l *Layout) openPartial(ctx context.Context, partial, path string, desc v1.Descriptor, waiting func()) (f *os.File, landed bool, err error) {
	for attempt := 0; ; attempt++ {
		if attempt == 100 {
			return nil, false, fmt.Errorf("layout %s: %s keeps being replaced by other writers", l.dir, filepath.Base(partial))
		}
		f, err := l.fs.openPartialFile(partial)
		if err != nil {
			return nil, false, fmt.Errorf("layout %s: %w", l.dir, err)
		}
		if err := lockFile(ctx, f, waiting); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("layout %s: lock %s: %w", l.dir, filepath.Base(partial), err)
		}
		held, herr := f.Stat()
		named, nerr := l.fs.lstat(partial)
		if herr == nil && nerr == nil && os.SameFile(held, named) {
			if l.hasVerified(path, desc) {
				// Landed while we waited, and this .partial is one we
				// just created (or a leftover): ours to remove, under
				// its lock.
				l.fs.remove(partial)
				f.Close()
				return nil, true, nil
			}
			return f, false, nil
		}
		f.Close()
		if l.hasVerified(path, desc) {
			return nil, true, nil
		}
	}
}
