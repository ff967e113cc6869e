package registry_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
)

// TestRegistryHandleSharesPoolAndTokens pulls 50 repositories of one
// token-authenticated registry through one Registry: the connections
// stay within MaxConnsPerHost and each distinct scope costs one token.
func TestRegistryHandleSharesPoolAndTokens(t *testing.T) {
	const repos, maxConns = 50, 4
	img, err := ocitest.Build(ocitest.Spec{Seed: 7, Layers: 2})
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]oci.Ref{}
	for i := range repos {
		refs[fmt.Sprintf("team/app%02d:v1", i)] = img
	}
	srv := registry.NewServer()
	srv.Auth = &registry.ServerAuth{Anonymous: []string{"*"}}
	for name, ref := range refs {
		repo, tag, _ := strings.Cut(name, ":")
		if err := srv.AddRef(repo, tag, ref); err != nil {
			t.Fatal(err)
		}
	}
	reg := &ocitest.Recorder{}
	srv.OnRequest = reg.Record
	var dialled atomic.Int64
	ts := httptest.NewUnstartedServer(srv)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialled.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	handle := &registry.Registry{Scheme: "http", Host: ts.Listener.Addr().String()}
	handle.MaxConnsPerHost = maxConns
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, repos)
	for i := range repos {
		wg.Go(func() {
			c := handle.Repository(fmt.Sprintf("team/app%02d", i))
			ref, err := c.Read(ctx, "v1")
			if err != nil {
				errs <- err
				return
			}
			errs <- oci.Walk(ctx, ref, func(r oci.Ref) error {
				img, ok := r.(*oci.Image)
				if !ok {
					return nil
				}
				for _, d := range img.Blobs() {
					rc, err := img.OpenBlob(ctx, d)
					if err != nil {
						return err
					}
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
					if err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := dialled.Load(); got > maxConns {
		t.Errorf("connections opened: %d, want at most MaxConnsPerHost = %d", got, maxConns)
	}
	// One token per repository scope (each is distinct), however many
	// requests each repository made.
	if got := reg.Count("GET", "/token"); got != repos {
		t.Errorf("token requests: %d, want one per distinct scope (%d)", got, repos)
	}
	// A second round through fresh handles of the same Registry asks for
	// no token and opens no connection.
	reg.Reset()
	before := dialled.Load()
	for i := range repos {
		if _, err := handle.Repository(fmt.Sprintf("team/app%02d", i)).Resolve(ctx, "v1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := reg.Count("", "/token"); got != 0 {
		t.Errorf("second round token requests: %d, want 0 (cached per scope on the Registry)", got)
	}
	if got := dialled.Load() - before; got != 0 {
		t.Errorf("second round opened %d connections, want 0", got)
	}
}
