package rootfs

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/internal/safetext"
	"github.com/ocipull/registry/oci"
)

// Layer media types read without a registered decompressor.
var (
	tarTypes = map[string]bool{
		v1.MediaTypeImageLayer:                         true,
		v1.MediaTypeImageLayerNonDistributable:         true, //nolint:staticcheck // still in use
		"application/vnd.docker.image.rootfs.diff.tar": true,
	}
	gzipTypes = map[string]bool{
		v1.MediaTypeImageLayerGzip:                                  true,
		v1.MediaTypeImageLayerNonDistributableGzip:                  true, //nolint:staticcheck // still in use
		"application/vnd.docker.image.rootfs.diff.tar.gzip":         true,
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": true,
	}
)

// layerStream is one layer's tar stream: decompressed from the verified
// blob, hashed as it is read (for the diff_id).
type layerStream struct {
	blob   *oci.VerifyReader
	decomp io.ReadCloser
	diff   hash.Hash
	tr     *tar.Reader
	want   digest.Digest // the config's diff_id, or "" when absent
	read   int64         // bytes of the tar stream read so far
}

// countingReader counts what passes.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	*c.n += int64(k)
	return k, err
}

// openLayer opens layer i of img.
func openLayer(ctx context.Context, img *oci.Image, desc v1.Descriptor, diffID digest.Digest, opts *Options) (*layerStream, error) {
	mt := desc.MediaType
	var decompress func(io.Reader) (io.ReadCloser, error)
	switch {
	case opts != nil && opts.Decompressors[mt] != nil:
		decompress = opts.Decompressors[mt]
	case tarTypes[mt]:
		decompress = func(r io.Reader) (io.ReadCloser, error) { return io.NopCloser(r), nil }
	case gzipTypes[mt]:
		decompress = func(r io.Reader) (io.ReadCloser, error) { return gzip.NewReader(r) }
	default:
		return nil, fmt.Errorf("layer %s: %w %q (register a decompressor for it in Options.Decompressors)",
			desc.Digest, ErrUnsupportedLayer, safetext.String(mt, 200))
	}
	blob, err := img.OpenBlob(ctx, desc)
	if err != nil {
		return nil, err
	}
	d, err := decompress(blob)
	if err != nil {
		blob.Close()
		return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	ls := &layerStream{blob: blob, decomp: d, diff: sha256.New(), want: diffID}
	var r io.Reader = d
	if tarTypes[mt] && diffID == desc.Digest {
		// Uncompressed: the blob's own verification is the diff_id's.
		ls.want, ls.diff = "", nopHash{}
	} else {
		r = io.TeeReader(d, ls.diff)
	}
	ls.tr = tar.NewReader(&countingReader{r: r, n: &ls.read})
	return ls, nil
}

// finish reads what is left of the layer (the tar's padding, the blob's
// end), so that the blob's digest and the diff_id are checked, and
// closes it.
func (ls *layerStream) finish() error {
	defer ls.blob.Close()
	defer ls.decomp.Close()
	if _, err := io.Copy(ls.diff, ls.decomp); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, ls.blob); err != nil {
		return err
	}
	if ls.want != "" && ls.want.Algorithm() == digest.SHA256 {
		if got := digest.NewDigest(digest.SHA256, ls.diff); got != ls.want {
			return fmt.Errorf("%w: uncompressed content is %s, the config says %s", ErrDiffID, got, ls.want)
		}
	}
	return nil
}

func (ls *layerStream) close() {
	ls.decomp.Close()
	ls.blob.Close()
}

// diffIDs reads the config's diff_ids, one per layer, or none when the
// config does not list them one to one.
func diffIDs(ctx context.Context, img *oci.Image) ([]digest.Digest, error) {
	cfg, err := img.ReadConfig(ctx)
	if err != nil {
		return nil, err
	}
	if len(cfg.RootFS.DiffIDs) != len(img.Layers()) {
		return nil, nil
	}
	return cfg.RootFS.DiffIDs, nil
}

// nopHash is a hash.Hash that hashes nothing (for a layer whose diff_id is
// its digest, already verified as it is read).
type nopHash struct{}

func (nopHash) Write(p []byte) (int, error) { return len(p), nil }
func (nopHash) Sum(b []byte) []byte         { return b }
func (nopHash) Reset()                      {}
func (nopHash) Size() int                   { return 0 }
func (nopHash) BlockSize() int              { return 64 }
