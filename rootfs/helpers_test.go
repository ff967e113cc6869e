package rootfs_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// entry is one tar entry of a test layer.
type entry struct {
	name     string
	typ      byte // tar.TypeReg when zero
	body     string
	link     string
	mode     int64
	uid, gid int
	size     int64 // when not zero, the header's size (a lie)
	pax      map[string]string
	major    int64
}

var epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// layerTar makes an uncompressed layer.
func layerTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: epoch, PAXRecords: e.pax, Devmajor: e.major, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("%s: %v", e.name, err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return b.Bytes()
}

// image builds an image of the layers (uncompressed tars), gzipping every
// other one, with diff_ids.
func image(t testing.TB, layers ...[]byte) *oci.Image {
	t.Helper()
	mem := oci.NewMemory()
	var descs []v1.Descriptor
	var ids []digest.Digest
	for i, l := range layers {
		ids = append(ids, digest.FromBytes(l))
		if i%2 == 1 {
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write(l)
			zw.Close()
			descs = append(descs, mem.Add(v1.MediaTypeImageLayerGzip, z.Bytes()))
			continue
		}
		descs = append(descs, mem.Add(v1.MediaTypeImageLayer, l))
	}
	cfg, _ := json.Marshal(v1.Image{Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: ids}})
	img, err := mem.NewImage(v1.Manifest{Config: mem.Add(v1.MediaTypeImageConfig, cfg), Layers: descs})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// imageOfType is an image of one layer, stored as it is under mediaType.
func imageOfType(t testing.TB, mediaType string, layer []byte) *oci.Image {
	t.Helper()
	mem := oci.NewMemory()
	cfg, _ := json.Marshal(v1.Image{Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer)}}})
	img, err := mem.NewImage(v1.Manifest{Config: mem.Add(v1.MediaTypeImageConfig, cfg), Layers: []v1.Descriptor{mem.Add(mediaType, layer)}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}
