package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ocipull/registry/internal/wiretest"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// TestServeReachesSendfile: ocipull serve, with its request log on,
// sends a layout's blobs to the connection as files (sendfile), the
// second time too (the first serve verifies the file; the serves after
// it do not hash it again).
func TestServeReachesSendfile(t *testing.T) {
	img, err := ocitest.Build(ocitest.Spec{Seed: 51, Layers: 1, LayerSize: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := oci.CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(context.Background(), "v1", img, nil); err != nil {
		t.Fatal(err)
	}
	srv, _, err := layoutServer(context.Background(), dir, "served/app")
	if err != nil {
		t.Fatal(err)
	}
	srv.OnRequest = requestLogger(io.Discard)
	spy := &wiretest.FileSends{Next: srv}
	ts := httptest.NewServer(spy)
	layer := img.(*oci.Image).Layers()[0]
	for range 2 {
		resp, err := http.Get(ts.URL + "/v2/served/app/blobs/" + string(layer.Digest))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != layer.Size {
			t.Fatalf("%d bytes, want %d", n, layer.Size)
		}
	}
	ts.Close()
	if files, others := spy.Bytes(); files != 2*layer.Size || others != 0 {
		t.Errorf("ReadFrom got %d bytes from files and %d from other readers; want all %d from the layout's file", files, others, 2*layer.Size)
	}
}
