package oci_test

import (
	"context"
	"fmt"
	"os"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/oci"
)

// Build an image in memory and write it to an OCI image layout on disk:
// every blob verified before it is renamed into place, index.json last.
func ExampleLayout_Write() {
	mem := oci.NewMemory()
	layer := mem.Add(v1.MediaTypeImageLayer, []byte("layer"))
	config := mem.Add(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	img, err := mem.NewImage(v1.Manifest{Config: config, Layers: []v1.Descriptor{layer}})
	if err != nil {
		panic(err)
	}
	dir, _ := os.MkdirTemp("", "layout")
	defer os.RemoveAll(dir)
	l, err := oci.CreateLayout(dir)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := l.Write(ctx, "v1", img, nil); err != nil {
		panic(err)
	}
	back, err := l.Read(ctx, "v1")
	fmt.Println(back.Digest() == img.Digest(), err)
	// Output: true <nil>
}

// Parse manifest bytes into a ref, checking them against the digest they
// were asked for.
func ExampleNewRef() {
	raw := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	ref, err := oci.NewRef(nil, raw, "", "")
	if err != nil {
		panic(err)
	}
	_, err = oci.NewRef(nil, raw, "", "sha256:0000000000000000000000000000000000000000000000000000000000000000")
	fmt.Println(ref.Descriptor().MediaType)
	fmt.Println(err != nil)
	// Output:
	// application/vnd.oci.image.index.v1+json
	// true
}
