package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

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
	mu  sync.Mutex // serialises index.json updates within the process

	blobMu  sync.Mutex
	landing map[digest.Digest]chan struct{} // blobs this value is landing; closed when done
}

const layoutFile = `{"imageLayoutVersion":"1.0.0"}`

// OpenLayout opens an existing layout, checking its oci-layout file.
func OpenLayout(dir string) (*Layout, error) {
	b, err := os.ReadFile(filepath.Join(dir, v1.ImageLayoutFile))
	if err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	var l v1.ImageLayout
	if err := json.Unmarshal(b, &l); err != nil || l.Version != v1.ImageLayoutVersion {
		return nil, fmt.Errorf("layout %s: unsupported oci-layout %q", dir, truncate(string(b)))
	}
	return &Layout{dir: dir}, nil
}

// CreateLayout opens the layout at dir, creating the directory, oci-layout
// and an empty index.json where they are missing.
func CreateLayout(dir string) (*Layout, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o755); err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, v1.ImageLayoutFile)); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(filepath.Join(dir, v1.ImageLayoutFile), []byte(layoutFile)); err != nil {
			return nil, fmt.Errorf("layout %s: %w", dir, err)
		}
	}
	l, err := OpenLayout(dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); errors.Is(err, fs.ErrNotExist) {
		if err := l.writeIndex(v1.Index{}); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Dir is the layout's directory.
func (l *Layout) Dir() string { return l.dir }

// BlobPath is where the layout keeps the content d names. d must be valid.
func (l *Layout) BlobPath(d digest.Digest) string {
	return filepath.Join(l.dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// Index reads the layout's index.json.
func (l *Layout) Index() (v1.Index, error) {
	var idx v1.Index
	b, err := os.ReadFile(filepath.Join(l.dir, "index.json"))
	if err != nil {
		return idx, fmt.Errorf("layout %s: %w", l.dir, err)
	}
	if len(b) > MaxManifestSize {
		return idx, fmt.Errorf("layout %s: index.json: %w", l.dir, ErrTooLarge)
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

// Find returns the index.json entry whose ref-name annotation is reference,
// or failing that whose digest is reference. The error wraps [ErrNotFound].
func (l *Layout) Find(reference string) (v1.Descriptor, error) {
	idx, err := l.Index()
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, d := range idx.Manifests {
		if d.Annotations[v1.AnnotationRefName] == reference {
			return d, nil
		}
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
	f, err := os.Open(l.BlobPath(desc.Digest))
	if err != nil {
		return nil, l.notFound(desc, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, ErrTooLarge)
	}
	return b, nil
}

// Blob implements [Source]. The stream is an *os.File, so it seeks.
func (l *Layout) Blob(_ context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	if err := ValidateDigest(desc.Digest); err != nil {
		return nil, err
	}
	f, err := os.Open(l.BlobPath(desc.Digest))
	if err != nil {
		return nil, l.notFound(desc, err)
	}
	return f, nil
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
	return writeFileAtomic(filepath.Join(l.dir, "index.json"), append(b, '\n'))
}

// writeFileAtomic writes b to a temporary file beside path, syncs it and
// renames it into place.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
