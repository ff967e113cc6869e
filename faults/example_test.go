package faults_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// Cut the first download of every blob after 1 KiB: the client resumes
// with a Range request and still gets verified content.
func ExampleInjector() {
	img, _ := ocitest.Build(ocitest.Spec{LayerSize: 64 << 10})
	srv := registry.NewServer()
	srv.AddRef("example/app", "v1", img)
	inj := &faults.Injector{Next: srv}
	inj.Add(faults.Rule{Method: "GET", Path: "/blobs/", Times: 1, Fault: faults.CutAfter(1 << 10)})
	ts := httptest.NewServer(inj)
	defer ts.Close()

	c := (&registry.Registry{Scheme: "http", Host: ts.Listener.Addr().String()}).Repository("example/app")
	ref, _ := c.Read(context.Background(), "v1")
	layer := ref.(*oci.Image).Layers()[0]
	rc, _ := ref.(*oci.Image).OpenBlob(context.Background(), layer)
	n, err := io.Copy(io.Discard, rc)
	fmt.Println(n == layer.Size, err, inj.RequestsTo("/blobs/"))
	// Output: true <nil> 2
}
