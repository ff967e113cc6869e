// Package ocitest builds content and registries for tests, in the spirit
// of net/http/httptest and testing/fstest: deterministic images (real
// tar+gzip or tar layers with matching diff_ids, history and a config a
// runtime accepts), multi-platform indexes, Docker schema-2 variants,
// artifacts with a subject, and layers too large to hold in memory,
// streamed. One call returns an [oci.Ref] ready for [registry.Server.AddRef];
// [NewRegistry] starts a server with it for the length of a test.
//
//	idx, _ := ocitest.Build(ocitest.Spec{Platforms: ocitest.Platforms("linux/amd64", "linux/arm64")})
//	reg := ocitest.NewRegistry(t, nil, map[string]oci.Ref{"app:v1": idx})
//	c := reg.Client("app")
package ocitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// Spec describes content to build. The zero Spec is one linux/amd64 image
// with one tar+gzip layer holding a 1 KiB file.
type Spec struct {
	// Seed makes the content: the same Spec builds the same digests.
	Seed uint64
	// Layers is the number of layers of each image; zero means 1.
	Layers int
	// LayerSize is the size of the one file each layer holds; zero means
	// 1 KiB. Layers whose file is larger than StreamAbove are not held in
	// memory: they are generated again whenever they are read.
	LayerSize int64
	// Platforms: empty for one linux/amd64 image, one for an image of that
	// platform, several for an index of one image per platform.
	Platforms []v1.Platform
	// Docker selects Docker schema-2 media types (manifest, manifest list,
	// config, layers) instead of OCI ones.
	Docker bool
	// Uncompressed makes tar layers instead of tar+gzip.
	Uncompressed bool
}

// StreamAbove is the layer file size above which [Build] streams a layer
// instead of holding it.
const StreamAbove = 16 << 20

// epoch is the fixed time of every built config, history entry and tar
// header, so builds are reproducible.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Platforms parses "os/arch[/variant]" strings; it panics on a malformed
// one (a test's literal).
func Platforms(specs ...string) []v1.Platform {
	out := make([]v1.Platform, len(specs))
	for i, s := range specs {
		p, err := oci.ParsePlatform(s)
		if err != nil {
			panic(fmt.Sprintf("ocitest.Platforms(%q): %v", s, err))
		}
		out[i] = p
	}
	return out
}

// Build builds the content spec describes: an *oci.Image, or an
// *oci.Index when spec names several platforms. Its source holds
// everything it names.
func Build(spec Spec) (oci.Ref, error) {
	if spec.Layers <= 0 {
		spec.Layers = 1
	}
	if spec.LayerSize <= 0 {
		spec.LayerSize = 1 << 10
	}
	src := newSource()
	plats := spec.Platforms
	if len(plats) == 0 {
		plats = []v1.Platform{{OS: "linux", Architecture: "amd64"}}
	}
	var ms []v1.Descriptor
	var img *oci.Image
	for i, p := range plats {
		var err error
		if img, err = buildImage(src, spec, uint64(i), p); err != nil {
			return nil, err
		}
		d := img.Descriptor()
		pp := p
		d.Platform = &pp
		ms = append(ms, d)
	}
	if len(plats) == 1 {
		return img, nil
	}
	mt := v1.MediaTypeImageIndex
	if spec.Docker {
		mt = oci.MediaTypeDockerManifestList
	}
	ix, err := src.mem.NewIndex(v1.Index{MediaType: mt, Manifests: ms})
	if err != nil {
		return nil, err
	}
	return oci.LoadRef(context.Background(), src, ix.Descriptor())
}

func buildImage(src *source, spec Spec, n uint64, p v1.Platform) (*oci.Image, error) {
	layerType, configType, manifestType := v1.MediaTypeImageLayerGzip, v1.MediaTypeImageConfig, v1.MediaTypeImageManifest
	if spec.Uncompressed {
		layerType = v1.MediaTypeImageLayer
	}
	if spec.Docker {
		layerType, configType, manifestType = oci.MediaTypeDockerLayer, oci.MediaTypeDockerConfig, oci.MediaTypeDockerManifest
	}
	cfg := v1.Image{Created: &epoch, Platform: p, RootFS: v1.RootFS{Type: "layers"},
		Config: v1.ImageConfig{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, Cmd: []string{"/bin/sh"}}}
	var layers []v1.Descriptor
	for i := 0; i < spec.Layers; i++ {
		g := layerGen{seed: spec.Seed, image: n, index: uint64(i), size: spec.LayerSize, gzip: !spec.Uncompressed}
		desc, diffID, err := src.addLayer(g, layerType)
		if err != nil {
			return nil, err
		}
		layers = append(layers, desc)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
		cfg.History = append(cfg.History, v1.History{Created: &epoch, CreatedBy: fmt.Sprintf("ocitest layer %d", i)})
	}
	cd, err := src.mem.AddJSON(configType, cfg)
	if err != nil {
		return nil, err
	}
	return src.image(v1.Manifest{MediaType: manifestType, Config: cd, Layers: layers})
}

// Artifact builds an OCI 1.1 artifact: a manifest with artifactType, the
// empty config, one layer per payload (of media type
// artifactType+".layer"; the empty blob when there is none) and subject
// as its subject (nil for none), so
// that a server lists it among subject's referrers. Its source also holds
// everything subject's source does not need to: add subject separately.
func Artifact(subject oci.Ref, artifactType string, payloads ...[]byte) (*oci.Image, error) {
	src := newSource()
	empty := src.mem.Add(v1.MediaTypeEmptyJSON, []byte("{}"))
	m := v1.Manifest{MediaType: v1.MediaTypeImageManifest, ArtifactType: artifactType, Config: empty}
	for _, p := range payloads {
		m.Layers = append(m.Layers, src.mem.Add(artifactType+".layer", p))
	}
	if len(m.Layers) == 0 {
		m.Layers = []v1.Descriptor{empty}
	}
	if subject != nil {
		d := subject.Descriptor()
		m.Subject = &v1.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
	}
	return src.image(m)
}

// image stores m and returns it as an image reading from the source
// (its large layers streamed, never held).
func (s *source) image(m v1.Manifest) (*oci.Image, error) {
	img, err := s.mem.NewImage(m)
	if err != nil {
		return nil, err
	}
	ref, err := oci.LoadRef(context.Background(), s, img.Descriptor())
	if err != nil {
		return nil, err
	}
	return ref.(*oci.Image), nil
}

// source holds built content: small blobs in memory, large layers as
// generators.
type source struct {
	mem    *oci.Memory
	stream map[digest.Digest]layerGen
}

func newSource() *source {
	mem := oci.NewMemory()
	mem.AllowDangling = true // streamed layers live beside it; Build is complete by construction
	return &source{mem: mem, stream: map[digest.Digest]layerGen{}}
}

// Manifest implements oci.Source.
func (s *source) Manifest(ctx context.Context, desc v1.Descriptor) ([]byte, error) {
	return s.mem.Manifest(ctx, desc)
}

// Blob implements oci.Source: generated layers are generated again.
func (s *source) Blob(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	if g, ok := s.stream[desc.Digest]; ok {
		return g.open(), nil
	}
	return s.mem.Blob(ctx, desc)
}

// BlobAt implements oci.RangeSource.
func (s *source) BlobAt(ctx context.Context, desc v1.Descriptor, offset int64) (io.ReadCloser, error) {
	if g, ok := s.stream[desc.Digest]; ok {
		rc := g.open()
		if _, err := io.CopyN(io.Discard, rc, offset); err != nil {
			rc.Close()
			return nil, err
		}
		return rc, nil
	}
	return s.mem.BlobAt(ctx, desc, offset)
}

// Has reports whether the source holds d (see oci.Memory.Has).
func (s *source) Has(d digest.Digest) bool {
	_, ok := s.stream[d]
	return ok || s.mem.Has(d)
}

// addLayer builds one layer: held when small, a generator when large.
// It returns the layer's descriptor and its diff_id.
func (s *source) addLayer(g layerGen, mediaType string) (v1.Descriptor, digest.Digest, error) {
	compressed, uncompressed := sha256.New(), sha256.New()
	var held bytes.Buffer
	var sink io.Writer = compressed
	if g.size <= StreamAbove {
		sink = io.MultiWriter(compressed, &held)
	}
	n, err := g.write(sink, uncompressed)
	if err != nil {
		return v1.Descriptor{}, "", err
	}
	desc := v1.Descriptor{MediaType: mediaType, Digest: digest.NewDigest(digest.SHA256, compressed), Size: n}
	diffID := digest.NewDigest(digest.SHA256, uncompressed)
	if g.size <= StreamAbove {
		s.mem.Add(mediaType, held.Bytes())
	} else {
		s.stream[desc.Digest] = g
	}
	return desc, diffID, nil
}

// layerGen generates one layer: a tar holding one file of size
// pseudo-random bytes, gzipped (fixed header, fastest level) unless not.
type layerGen struct {
	seed, image, index uint64
	size               int64
	gzip               bool
}

// write writes the layer's bytes to w and its tar stream to diff, and
// returns how many bytes went to w.
func (g layerGen) write(w io.Writer, diff hash.Hash) (int64, error) {
	cw := &countWriter{w: w}
	var tarOut io.Writer = cw
	var zw *gzip.Writer
	if g.gzip {
		zw, _ = gzip.NewWriterLevel(cw, gzip.BestSpeed)
		zw.Header.ModTime = time.Time{}
		tarOut = zw
	}
	if diff != nil {
		tarOut = io.MultiWriter(tarOut, diff)
	}
	tw := tar.NewWriter(tarOut)
	hdr := &tar.Header{Name: fmt.Sprintf("ocitest/layer-%d-%d.bin", g.image, g.index), Mode: 0o644, Size: g.size,
		ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return 0, err
	}
	rng := rand.New(rand.NewPCG(g.seed, g.image<<32|g.index))
	buf := make([]byte, 64<<10)
	for left := g.size; left > 0; {
		k := min(int64(len(buf)), left)
		for i := 0; i < int(k); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && i+j < int(k); j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := tw.Write(buf[:k]); err != nil {
			return 0, err
		}
		left -= k
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return 0, err
		}
	}
	return cw.n, nil
}

// open streams the layer's bytes, generated again.
func (g layerGen) open() io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		_, err := g.write(pw, nil)
		pw.CloseWithError(err)
	}()
	return pr
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
