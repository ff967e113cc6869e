package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layout is an OCI image layout directory (image-spec, "OCI Image Layout
// Specification"): an oci-layout file, an index.json whose entries name
// tags with the org.opencontainers.image.ref.name annotation, and content
// under blobs/<algorithm>/<encoded>.
//
// A Layout is a [RangeSource]: refs read from it fetch their blobs from the
// directory, verified like any other source. Writes are atomic per file
// (a temporary file renamed into place). Writers may share a layout:
// [Layout.Write] calls at once on one Layout, or on several Layout values
// and in several processes where the system has flock (Linux, macOS, the
// BSDs), land each blob once (the others wait for it and then skip it) and
// keep every index.json entry.
type Layout struct {
	dir string
	fs  *layoutFS  // every file operation, inside dir only
	mu  sync.Mutex // serialises index.json updates within the process

	blobMu    sync.Mutex
	landing   map[digest.Digest]chan struct{} // blobs this value is landing; closed when done
	pipelines chan struct{}                   // WriteBlob's pipelined landings

	verifiedMu sync.Mutex
	verified   map[digest.Digest]fileStamp     // files Blob verified, as they were then
	verifying  map[digest.Digest]chan struct{} // hashes under way; closed when done
	hashes     atomic.Int64                    // whole-file hashes made (for tests)
}

const layoutFile = `{"imageLayoutVersion":"1.0.0"}`

// OpenLayout opens an existing layout, checking its oci-layout file.
func OpenLayout(dir string) (*Layout, error) {
	lfs, err := openLayoutFS(dir)
	if err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	b, err := lfs.readRegular(v1.ImageLayoutFile, 4<<10)
	if err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	var l v1.ImageLayout
	if err := json.Unmarshal(b, &l); err != nil || l.Version != v1.ImageLayoutVersion {
		return nil, fmt.Errorf("layout %s: unsupported oci-layout %q", dir, truncate(string(b)))
	}
	return &Layout{dir: dir, fs: lfs}, nil
}

// CreateLayout opens the layout at dir, creating the directory, oci-layout
// and an empty index.json where they are missing.
func CreateLayout(dir string) (*Layout, error) {
	if err := os.MkdirAll(dir, layoutDirMode); err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	lfs, err := openLayoutFS(dir)
	if err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	if err := lfs.ensureDir("blobs"); err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	if _, err := lfs.lstat(v1.ImageLayoutFile); errors.Is(err, fs.ErrNotExist) {
		if err := lfs.writeFileAtomic(v1.ImageLayoutFile, []byte(layoutFile)); err != nil {
			return nil, fmt.Errorf("layout %s: %w", dir, err)
		}
	}
	l, err := OpenLayout(dir)
	if err != nil {
		return nil, err
	}
	if _, err := l.fs.lstat("index.json"); errors.Is(err, fs.ErrNotExist) {
		if err := l.writeIndex(v1.Index{}); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// BlobPath is where the layout keeps the content d names. d must be valid.
func (l *Layout) BlobPath(d digest.Digest) string {
	return l.fs.name(blobRel(d))
}

// blobRel is BlobPath relative to the layout's directory.
func blobRel(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// Index reads the layout's index.json.
func (l *Layout) Index() (v1.Index, error) {
	var idx v1.Index
	b, err := l.fs.readRegular("index.json", MaxManifestSize)
	if err != nil {
		return idx, fmt.Errorf("layout %s: %w", l.dir, err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return idx, fmt.Errorf("layout %s: index.json: %w: %v", l.dir, ErrInvalidManifest, err)
	}
	for i, d := range idx.Manifests {
		if err := ValidateDescriptor(d); err != nil {
			return idx, fmt.Errorf("layout %s: index.json: manifests[%d]: %w", l.dir, i, err)
		}
	}
	return idx, nil
}

// Find returns the index.json entry reference names: the entry whose
// io.containerd.image.name is reference (a full name, as
// "ghcr.io/org/app:v1"), or else the one whose
// org.opencontainers.image.ref.name is reference (a tag), or else one
// whose digest is reference. A tag that several images share is an error
// naming their full names (ask for one of those). The error wraps
// [ErrNotFound] when nothing matches.
func (l *Layout) Find(reference string) (v1.Descriptor, error) {
	idx, err := l.Index()
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, d := range idx.Manifests {
		if d.Annotations[annotationImageName] == reference && reference != "" {
			return d, nil
		}
	}
	var tagged []v1.Descriptor
	for _, d := range idx.Manifests {
		if d.Annotations[v1.AnnotationRefName] == reference {
			tagged = append(tagged, d)
		}
	}
	switch {
	case len(tagged) == 1:
		return tagged[0], nil
	case len(tagged) > 1:
		var names []string
		for _, d := range tagged {
			names = append(names, truncate(d.Annotations[annotationImageName]))
		}
		return v1.Descriptor{}, fmt.Errorf("layout %s: %q names %d images (%s): %w; ask for one by its full name",
			l.dir, truncate(reference), len(tagged), strings.Join(names, ", "), ErrAmbiguous)
	}
	for _, d := range idx.Manifests {
		if string(d.Digest) == reference {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("layout %s: %q: %w", l.dir, truncate(reference), ErrNotFound)
}

// Read loads the manifest that reference (a ref name or a digest listed in
// index.json) names, verified, as a lazy ref reading from the layout under ctx.
func (l *Layout) Read(ctx context.Context, reference string) (Ref, error) {
	d, err := l.Find(reference)
	if err != nil {
		return nil, err
	}
	d.Annotations = nil
	return LoadRef(ctx, l, d)
}

// Manifest implements [Source]: it reads blobs/<alg>/<encoded>, capped at
// [MaxManifestSize].
func (l *Layout) Manifest(_ context.Context, desc v1.Descriptor) ([]byte, error) {
	if err := ValidateDigest(desc.Digest); err != nil {
		return nil, err
	}
	if err := l.checkBlobDir(desc.Digest); err != nil {
		return nil, err
	}
	b, err := l.fs.readRegular(blobRel(desc.Digest), MaxManifestSize)
	if errors.Is(err, ErrTooLarge) {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, ErrTooLarge)
	}
	if err != nil {
		return nil, l.notFound(desc, err)
	}
	return b, nil
}

// PeekBlob returns up to n of the first bytes of stored content d,
// unverified: enough to tell a JSON document (a manifest, a config) from a
// layer without reading the layer. Only regular files inside the layout
// are read ([ErrNotRegular] otherwise); the error wraps [ErrNotFound] when
// d is not stored.
func (l *Layout) PeekBlob(_ context.Context, d digest.Digest, n int) ([]byte, error) {
	if err := ValidateDigest(d); err != nil {
		return nil, err
	}
	if err := l.checkBlobDir(d); err != nil {
		return nil, err
	}
	f, err := l.fs.openRegular(blobRel(d), os.O_RDONLY)
	if err != nil {
		return nil, l.notFound(v1.Descriptor{Digest: d}, err)
	}
	defer f.Close()
	b := make([]byte, n)
	k, err := io.ReadFull(f, b)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	return b[:k], err
}

// Blob implements [Source]. The stream is an *os.File, so it seeks. The
// file is verified against desc (size and digest) before it is returned,
// once per file: the Layout remembers files it verified, by device, inode,
// size and modification time, and hashes a file again only when one of
// those changed. Only regular files inside the layout's directory are
// opened ([ErrNotRegular] otherwise), so a layout whose blobs are symlinks
// out of it does not serve them.
func (l *Layout) Blob(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	if err := ValidateDigest(desc.Digest); err != nil {
		return nil, err
	}
	if err := l.checkBlobDir(desc.Digest); err != nil {
		return nil, err
	}
	f, err := l.fs.openRegular(blobRel(desc.Digest), os.O_RDONLY)
	if err != nil {
		return nil, l.notFound(desc, err)
	}
	if err := l.verifyFile(ctx, f, desc); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkBlobDir refuses a blobs or blobs/<alg> that is not a real
// directory inside the layout (a symlink out of it).
func (l *Layout) checkBlobDir(d digest.Digest) error {
	for _, p := range []string{"blobs", "blobs/" + d.Algorithm().String()} {
		st, err := l.fs.lstat(p)
		if err != nil {
			return l.notFound(v1.Descriptor{Digest: d}, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("layout %s: %s: %w: want a directory, found %s", l.dir, l.fs.name(p), ErrNotRegular, st.Mode().Type())
		}
	}
	return nil
}

// blobDir makes sure blobs/<alg> of d is a real directory, creating it
// (and blobs) when missing.
func (l *Layout) blobDir(d digest.Digest) error {
	if err := l.fs.ensureDir("blobs"); err != nil {
		return fmt.Errorf("layout %s: %w", l.dir, err)
	}
	if err := l.fs.ensureDir("blobs/" + d.Algorithm().String()); err != nil {
		return fmt.Errorf("layout %s: %w", l.dir, err)
	}
	return nil
}

// BlobAt implements [RangeSource].
func (l *Layout) BlobAt(ctx context.Context, desc v1.Descriptor, offset int64) (io.ReadCloser, error) {
	rc, err := l.Blob(ctx, desc)
	if err != nil {
		return nil, err
	}
	if _, err := rc.(*os.File).Seek(offset, io.SeekStart); err != nil {
		rc.Close()
		return nil, err
	}
	return rc, nil
}

func (l *Layout) notFound(desc v1.Descriptor, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("layout %s: %s: %w", l.dir, desc.Digest, ErrNotFound)
	}
	return fmt.Errorf("layout %s: %w", l.dir, err)
}

func (l *Layout) writeIndex(idx v1.Index) error {
	idx.SchemaVersion = 2
	idx.MediaType = v1.MediaTypeImageIndex
	if idx.Manifests == nil {
		idx.Manifests = []v1.Descriptor{}
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return l.fs.writeFileAtomic("index.json", append(b, '\n'))
}

// fileStamp identifies one version of a file: what verifyFile remembers.
type fileStamp struct {
	size    int64
	modTime int64
	sys     any // device and inode where the system has them
}

func stampOf(st os.FileInfo) fileStamp {
	return fileStamp{size: st.Size(), modTime: st.ModTime().UnixNano(), sys: fileID(st)}
}

// verifyFile checks that f holds exactly desc's content, hashing it unless
// this Layout verified the same unchanged file before, and leaves f at
// offset 0.
func (l *Layout) verifyFile(ctx context.Context, f *os.File, desc v1.Descriptor) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != desc.Size {
		return fmt.Errorf("layout %s: blob %s: %w: %d bytes on disk, descriptor says %d", l.dir, desc.Digest, ErrSizeMismatch, st.Size(), desc.Size)
	}
	stamp := stampOf(st)
	for {
		l.verifiedMu.Lock()
		if l.verified[desc.Digest] == stamp {
			l.verifiedMu.Unlock()
			return nil
		}
		if busy := l.verifying[desc.Digest]; busy != nil {
			// Another request hashes this blob now: wait for its answer
			// instead of hashing it once more.
			l.verifiedMu.Unlock()
			select {
			case <-busy:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if l.verifying == nil {
			l.verifying = map[digest.Digest]chan struct{}{}
		}
		done := make(chan struct{})
		l.verifying[desc.Digest] = done
		l.verifiedMu.Unlock()
		err := l.hashFile(ctx, f, desc, stamp)
		l.verifiedMu.Lock()
		delete(l.verifying, desc.Digest)
		l.verifiedMu.Unlock()
		close(done)
		return err
	}
}

// hashFile hashes f against desc and, when it matches, remembers stamp as
// verified; f is left at offset 0.
func (l *Layout) hashFile(ctx context.Context, f *os.File, desc v1.Descriptor, stamp fileStamp) error {
	l.hashes.Add(1)
	vr, err := NewVerifyReader(io.NopCloser(&ctxReader{ctx: ctx, r: f}), desc)
	if err != nil {
		return err
	}
	if _, err := vr.WriteTo(io.Discard); err != nil {
		return fmt.Errorf("layout %s: %w", l.dir, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	l.verifiedMu.Lock()
	if l.verified == nil {
		l.verified = map[digest.Digest]fileStamp{}
	}
	l.verified[desc.Digest] = stamp
	l.verifiedMu.Unlock()
	return nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
