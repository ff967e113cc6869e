package interop

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/mirror"
)

// TestProxyBehaviourCompared tries the README's comparison table's rows
// on our cache and on the reference registry's proxy mode, with the same
// upstream: a blob the upstream corrupts (is the client's answer a clean
// 200 of wrong bytes?), the tag and the blob with the upstream down after
// one pull (answered from the store?), and the Warning header of a stale
// answer. Ours is asserted; the reference's answers are logged for the
// table.
func TestProxyBehaviourCompared(t *testing.T) {
	for _, proxy := range []string{"ocipull", "reference"} {
		t.Run(proxy, func(t *testing.T) {
			up, _, layer := upstreamForProxies(t, 1<<20)
			inj := &faults.Injector{Next: up.Config.Handler}
			var down atomic.Bool
			up.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if down.Load() {
					http.Error(w, "down", http.StatusServiceUnavailable)
					return
				}
				inj.ServeHTTP(w, r)
			})
			var ps *httptest.Server
			if proxy == "ocipull" {
				m, err := mirror.Open(t.TempDir(), mirror.Config{Upstreams: map[string]mirror.Upstream{"": {URL: up.URL}}, TagTTL: 1})
				if err != nil {
					t.Fatal(err)
				}
				ps = httptest.NewServer(m)
				t.Cleanup(func() { ps.Close(); m.Close() })
			} else {
				cfg := &configuration.Configuration{}
				cfg.Storage = configuration.Storage{"inmemory": configuration.Parameters{}}
				cfg.Log.Level = "error"
				cfg.Log.AccessLog.Disabled = true
				cfg.Proxy = configuration.Proxy{RemoteURL: up.URL}
				ps = httptest.NewServer(handlers.NewApp(context.Background(), cfg))
				t.Cleanup(ps.Close)
			}
			get := func(path string) (int, http.Header, []byte, error) {
				req, _ := http.NewRequest(http.MethodGet, ps.URL+path, nil)
				req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return 0, nil, nil, err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return resp.StatusCode, resp.Header, b, err
			}
			// A corrupt blob from the upstream.
			inj.Add(faults.Rule{Path: string(layer.Digest), Fault: faults.Corrupt()})
			code, _, body, err := get("/v2/proxy/img/blobs/" + string(layer.Digest))
			clean := err == nil && code == 200 && int64(len(body)) == layer.Size
			wrong := digest.NewDigestFromBytes(digest.SHA256, sum(body)) != layer.Digest
			t.Logf("%s, corrupt upstream blob: status %d, %d bytes, read error %v, clean answer of wrong bytes: %v", proxy, code, len(body), err, clean && wrong)
			if proxy == "ocipull" && clean && wrong {
				t.Error("a corrupt blob was answered as a clean 200")
			}
			inj.Reset()
			// One good pull, then the upstream goes down.
			if code, _, _, err := get("/v2/proxy/img/manifests/v1"); code != 200 || err != nil {
				t.Fatalf("%s manifest: %d %v", proxy, code, err)
			}
			if code, _, _, err := get("/v2/proxy/img/blobs/" + string(layer.Digest)); code != 200 || err != nil {
				t.Fatalf("%s blob: %d %v", proxy, code, err)
			}
			down.Store(true)
			tagCode, hdr, _, _ := get("/v2/proxy/img/manifests/v1")
			blobCode, _, _, _ := get("/v2/proxy/img/blobs/" + string(layer.Digest))
			t.Logf("%s, upstream down: tag %d (Warning %q), stored blob %d", proxy, tagCode, hdr.Get("Warning"), blobCode)
			if proxy == "ocipull" && (tagCode != 200 || blobCode != 200 || !strings.HasPrefix(hdr.Get("Warning"), "110")) {
				t.Errorf("upstream down: tag %d (Warning %q), blob %d; want both served, the tag marked stale", tagCode, hdr.Get("Warning"), blobCode)
			}
		})
	}
}

func sum(b []byte) []byte { h := sha256.Sum256(b); return h[:] }
