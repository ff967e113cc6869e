package interop

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/memory"
	orasremote "oras.land/oras-go/v2/registry/remote"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

func hostOf(t testing.TB, ts *httptest.Server) string {
	u, err := url.Parse(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// drain reads a verified blob and returns the sha256 of what it yielded.
func drain(t testing.TB, img *oci.Image, d ocispec.Descriptor) digest.Digest {
	t.Helper()
	rc, err := img.OpenBlob(context.Background(), d)
	if err != nil {
		t.Fatalf("open %s: %v", d.Digest, err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatalf("read %s: %v", d.Digest, err)
	}
	return digest.NewDigest(digest.SHA256, h)
}

func ggcrLayerDigests(t testing.TB, img ggcrv1.Image) []digest.Digest {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []digest.Digest
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, digest.Digest(d.String()))
	}
	return out
}

// TestOurClientAgainstReferenceRegistry pushes with go-containerregistry
// into the reference registry, pulls everything back with our client and
// compares, then serves what our client read from our Server (pull-through)
// and pulls it with go-containerregistry and oras-go.
func TestOurClientAgainstReferenceRegistry(t *testing.T) {
	for _, withAuth := range []bool{false, true} {
		t.Run(fmt.Sprintf("htpasswd=%v", withAuth), func(t *testing.T) {
			user, pass := "", ""
			ggAuth := authn.Anonymous
			if withAuth {
				user, pass = "interop", "pw-interop"
				ggAuth = &authn.Basic{Username: user, Password: pass}
			}
			rr := referenceRegistry(t, user, pass)
			host := hostOf(t, rr)
			c := makeContent(t, !withAuth)
			push(t, host, "peer/content", c, ggAuth)

			ctx := context.Background()
			cl := (&registry.Registry{Scheme: "http", Host: host}).Repository("peer/content")
			if withAuth {
				cl.Registry().Credentials = registry.StaticCredentials(user, pass)
			}
			refs := map[string]oci.Ref{}
			for tag, img := range c.images {
				want, _ := img.Digest()
				ref, err := cl.Read(ctx, tag)
				if err != nil {
					t.Fatalf("reference registry disagrees: read %s: %v", tag, err)
				}
				if string(ref.Digest()) != want.String() {
					t.Fatalf("%s: digest %s, pushed %s", tag, ref.Digest(), want)
				}
				byDigest, err := cl.Read(ctx, want.String())
				if err != nil || byDigest.Digest() != ref.Digest() {
					t.Fatalf("%s by digest: %v", tag, err)
				}
				ours := ref.(*oci.Image)
				var got []digest.Digest
				for _, l := range ours.Layers() {
					if d := drain(t, ours, l); d != l.Digest {
						t.Fatalf("%s: layer %s hashed to %s", tag, l.Digest, d)
					}
					got = append(got, l.Digest)
				}
				if !slices.Equal(got, ggcrLayerDigests(t, img)) {
					t.Fatalf("%s: layers %v, pushed %v", tag, got, ggcrLayerDigests(t, img))
				}
				refs[tag] = ref
			}
			want, _ := c.indexes["multi"].Digest()
			multi, err := cl.Read(ctx, "multi"+"@"+want.String())
			if err != nil {
				t.Fatal(err)
			}
			refs["multi"] = multi
			im, _ := c.indexes["multi"].IndexManifest()
			for i, p := range c.platforms {
				img, err := cl.ReadPlatform(ctx, "multi", ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
				if err != nil {
					t.Fatalf("platform %v: %v", p, err)
				}
				if string(img.Digest()) != im.Manifests[i].Digest.String() {
					t.Fatalf("platform %v: got %s, want %s", p, img.Digest(), im.Manifests[i].Digest)
				}
				for _, l := range img.Blobs() {
					drain(t, img, l)
				}
			}
			tags, err := cl.Tags(ctx)
			if err != nil {
				// Tell our bug from the peer's: does go-containerregistry list them?
				repo, _ := name.NewRepository(host+"/peer/content", name.Insecure)
				gtags, gerr := remote.List(repo, remote.WithAuth(ggAuth))
				if gerr == nil {
					t.Fatalf("tags: ours failed (%v), go-containerregistry listed %v", err, gtags)
				}
				t.Logf("the reference registry cannot list tags here (ours: %v; go-containerregistry: %v)", err, gerr)
			}
			for tag := range c.images {
				if err != nil {
					break
				}
				if !slices.Contains(tags, tag) {
					t.Errorf("tags %v lack %s", tags, tag)
				}
			}
			subject, _ := c.images["oci"].Digest()
			art, _ := c.artifact.Digest()
			referrers, err := cl.Referrers(ctx, digest.Digest(subject.String()), "")
			if err != nil {
				t.Fatal(err)
			}
			if len(referrers) != 1 || string(referrers[0].Digest) != art.String() {
				t.Errorf("referrers: got %v, want [%s]", referrers, art)
			}
			repos, err := cl.Registry().Repositories(ctx)
			if err != nil {
				reg, _ := name.NewRegistry(host, name.Insecure)
				grepos, gerr := remote.Catalog(ctx, reg, remote.WithAuth(ggAuth))
				if gerr == nil {
					t.Fatalf("catalog: ours failed (%v), go-containerregistry listed %v", err, grepos)
				}
				t.Logf("the reference registry cannot list its catalog here (ours: %v; go-containerregistry: %v)", err, gerr)
			} else if !slices.Contains(repos, "peer/content") {
				t.Errorf("catalog: %v", repos)
			}
			if _, err := cl.Read(ctx, "missing"); !errors.Is(err, registry.ErrManifestUnknown) {
				t.Errorf("missing tag: %v", err)
			}

			// Pull-through: our Server serves what our client read, and
			// the peers' clients pull it.
			for _, serverAuth := range []bool{false, true} {
				srv := registry.NewServer()
				if serverAuth {
					srv.Auth = &registry.ServerAuth{Users: map[string]registry.ServerUser{"peer": {Password: "peerpw", Repositories: []string{"*"}}}}
				}
				for tag, ref := range refs {
					if err := srv.AddRef("mirror/content", tag, ref); err != nil {
						t.Fatal(err)
					}
				}
				ts := httptest.NewServer(srv)
				mhost := hostOf(t, ts)
				var ga authn.Authenticator = authn.Anonymous
				var oc orasremote.Client
				if serverAuth {
					ga = &authn.Basic{Username: "peer", Password: "peerpw"}
					oc = &orasauth.Client{Credential: orasauth.StaticCredential(mhost, orasauth.Credential{Username: "peer", Password: "peerpw"})}
				}
				for tag, ref := range refs {
					gref, _ := name.ParseReference(mhost+"/mirror/content:"+tag, name.Insecure)
					desc, err := remote.Get(gref, remote.WithAuth(ga))
					if err != nil {
						t.Fatalf("ggcr against our server (auth=%v) %s: %v", serverAuth, tag, err)
					}
					if desc.Digest.String() != string(ref.Digest()) {
						t.Fatalf("ggcr: %s digest %s, want %s", tag, desc.Digest, ref.Digest())
					}
					if _, ok := ref.(*oci.Image); ok {
						gimg, err := desc.Image()
						if err != nil {
							t.Fatal(err)
						}
						ls, _ := gimg.Layers()
						for _, l := range ls {
							rc, err := l.Compressed()
							if err != nil {
								t.Fatalf("ggcr layer: %v", err)
							}
							if _, err := readAllClose(rc); err != nil {
								t.Fatalf("ggcr layer read (verified by ggcr): %v", err)
							}
						}
					}
					repo, err := orasremote.NewRepository(mhost + "/mirror/content")
					if err != nil {
						t.Fatal(err)
					}
					repo.PlainHTTP = true
					if oc != nil {
						repo.Client = oc
					}
					store := memory.New()
					od, err := oras.Copy(ctx, repo, tag, store, tag, oras.DefaultCopyOptions)
					if err != nil {
						t.Fatalf("oras-go against our server (auth=%v) %s: %v", serverAuth, tag, err)
					}
					if od.Digest != ref.Digest() {
						t.Fatalf("oras: %s digest %s, want %s", tag, od.Digest, ref.Digest())
					}
				}
				ts.Close()
			}
		})
	}
}
