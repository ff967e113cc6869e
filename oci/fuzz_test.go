package oci_test

import (
	"context"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// FuzzNewRef pushes arbitrary bytes and media types through manifest
// parsing: it must never panic, and what it accepts must carry the digest
// of exactly those bytes and valid descriptors.
func FuzzNewRef(f *testing.F) {
	seeds := []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"platform":{"os":"linux","architecture":"amd64"}}]}`,
		`{"schemaVersion":2,"manifests":[]}`,
		`{"schemaVersion":1,"fsLayers":[]}`,
		`{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:x","size":-1}}`,
		`{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"data":"e30="}}`,
		`[]`, `null`, ``, `{"schemaVersion":2}{}`,
	}
	for _, s := range seeds {
		for _, mt := range []string{"", "application/json", v1.MediaTypeImageManifest, v1.MediaTypeImageIndex, oci.MediaTypeDockerManifest} {
			f.Add([]byte(s), mt)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, mt string) {
		ref, err := oci.NewRef(oci.NewMemory(), raw, mt, "")
		if err != nil {
			return
		}
		if ref.Digest() != digest.FromBytes(raw) || ref.Descriptor().Size != int64(len(raw)) {
			t.Fatal("accepted ref with the wrong digest or size")
		}
		// A wrong expected digest is always refused.
		if _, err := oci.NewRef(nil, raw, mt, digest.FromString("other")); !errors.Is(err, oci.ErrDigestMismatch) {
			t.Fatalf("wrong digest accepted: %v", err)
		}
		switch r := ref.(type) {
		case *oci.Image:
			for _, d := range r.Blobs() {
				if oci.ValidateDescriptor(d) != nil {
					t.Fatal("accepted an invalid descriptor")
				}
			}
		case *oci.Index:
			for _, d := range r.Manifests() {
				if oci.ValidateDescriptor(d) != nil {
					t.Fatal("accepted an invalid descriptor")
				}
				r.Child(context.Background(), d) // must not panic
			}
			r.SelectPlatform(oci.DefaultPlatform())
		}
	})
}
