package rootfs_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
	"github.com/ocipull/registry/rootfs"
)

// Flatten an image's layers into one tar stream of its root filesystem.
func ExampleFlatten() {
	ref, err := ocitest.Build(ocitest.Spec{Layers: 2})
	if err != nil {
		panic(err)
	}
	img := ref.(*oci.Image)
	var out bytes.Buffer
	if err := rootfs.Flatten(context.Background(), img, &out, nil); err != nil {
		panic(err)
	}
	tr := tar.NewReader(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		fmt.Println(h.Name)
	}
	// Output:
	// ocitest/
	// ocitest/layer-0-0.bin
	// ocitest/layer-0-1.bin
}

// Unpack an image's root filesystem into a directory; nothing outside it
// is touched, whatever the layers hold.
func ExampleUnpack() {
	ref, err := ocitest.Build(ocitest.Spec{Layers: 2})
	if err != nil {
		panic(err)
	}
	dir, _ := os.MkdirTemp("", "rootfs-")
	defer os.RemoveAll(dir)
	target := filepath.Join(dir, "rootfs")
	if err := rootfs.Unpack(context.Background(), ref.(*oci.Image), target, nil); err != nil {
		panic(err)
	}
	st, err := os.Stat(filepath.Join(target, "ocitest", "layer-0-1.bin"))
	fmt.Println(st.Size(), err)
	// Output: 1024 <nil>
}
