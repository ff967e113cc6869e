package registry_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// TestServerSoak runs 64 concurrent clients against the server for a
// bounded time, with and without auth, pulling manifests and blobs (whole
// and by Range) while refs are added: zero errors, the same digests.
func TestServerSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak skipped in -short mode")
	}
	for _, withAuth := range []bool{false, true} {
		t.Run(fmt.Sprintf("auth=%v", withAuth), func(t *testing.T) {
			mem := oci.NewMemory()
			img := newImage(t, mem, linuxAMD64, 64<<10, 16<<10)
			s := registry.NewServer()
			if withAuth {
				s.Auth = &registry.ServerAuth{Anonymous: []string{"*"}}
			}
			mustAdd(t, s, "soak/img", "v1", img)
			ts := serve(t, s)
			deadline := time.Now().Add(1500 * time.Millisecond)
			var pulls, failures atomic.Int64
			var wg sync.WaitGroup
			for i := 0; i < 64; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					c := clientFor(t, ts, "soak/img")
					for n := 0; time.Now().Before(deadline) && n < 200; n++ {
						if err := soakOnce(c, ts.URL, img, i+n); err != nil {
							failures.Add(1)
							t.Error(err)
							return
						}
						pulls.Add(1)
					}
				}(i)
			}
			// AddRef concurrent with the reads.
			for j := 0; j < 20; j++ {
				mustAdd(t, s, "soak/img", fmt.Sprintf("extra%d", j), newImage(t, mem, linuxAMD64, 100))
			}
			wg.Wait()
			t.Logf("%d pulls, %d failures", pulls.Load(), failures.Load())
			if pulls.Load() < 64 {
				t.Errorf("only %d pulls completed", pulls.Load())
			}
		})
	}
}

func soakOnce(c *registry.Client, base string, want *oci.Image, n int) error {
	ctx := context.Background()
	ref, err := c.Read(ctx, "v1")
	if err != nil {
		return err
	}
	if ref.Digest() != want.Digest() {
		return fmt.Errorf("digest %s, want %s", ref.Digest(), want.Digest())
	}
	img := ref.(*oci.Image)
	l := img.Layers()[n%len(img.Layers())]
	rc, err := img.OpenBlob(context.Background(), l)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || digest.FromBytes(b) != l.Digest {
		return fmt.Errorf("blob %s: %v", l.Digest, err)
	}
	if n%4 == 0 {
		// A ranged read through plain HTTP, as other clients make them.
		req, _ := http.NewRequest(http.MethodGet, base+"/v2/soak/img/blobs/"+string(l.Digest), nil)
		req.Header.Set("Range", "bytes=10-19")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		part, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusPartialContent && string(part) != string(b[10:20]) {
			return fmt.Errorf("range: wrong bytes")
		}
		if resp.StatusCode != http.StatusPartialContent && resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("range: status %d", resp.StatusCode)
		}
	}
	return nil
}
