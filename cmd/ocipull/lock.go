package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// lockFile is what `ocipull lock` writes and `ocipull pull --lock` reads:
// per reference, the digest it resolved to and, for an index, the digest
// of each requested platform's manifest. Entries are sorted by reference
// and platforms by name, so a second run over unchanged registries writes
// the same bytes.
type lockFile struct {
	Version int         `json:"version"`
	Images  []lockImage `json:"images"`
}

type lockImage struct {
	Reference string         `json:"reference"` // as written
	Name      string         `json:"name"`      // canonical, as containerd names it
	Digest    digest.Digest  `json:"digest"`
	MediaType string         `json:"mediaType"`
	Size      int64          `json:"size"`
	Platforms []lockPlatform `json:"platforms,omitempty"`
}

type lockPlatform struct {
	Platform  string        `json:"platform"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
}

var lockCommand = &command{
	name: "lock", args: "REFERENCE...", min: 0, max: -1,
	summary: "pin references to digests in a lockfile (one HEAD per reference)",
	examples: []string{
		"ocipull lock -o images.lock docker.io/library/alpine:3.20 ghcr.io/org/app:v1",
		"ocipull lock -p linux/amd64,linux/arm64 --from images.txt -o images.lock",
		"ocipull pull --lock images.lock ./vendor/images",
	},
	define: func(f *flags, e *env) func(context.Context) error {
		rf := addRemoteFlags(f)
		platform := f.String("platform", "p", "", "for an index, also pin these `PLATFORMS` (comma list) to their manifests' digests (one GET of the index)")
		out := f.String("output", "o", "", "write the lockfile to `FILE` (default: standard output)")
		from := f.String("from", "", "", "read references from `FILE`, one a line (# starts a comment)")
		return func(ctx context.Context) error {
			refs := append([]string(nil), e.args...)
			if *from != "" {
				more, err := readReferenceList(*from)
				if err != nil {
					return err
				}
				refs = append(refs, more...)
			}
			if len(refs) == 0 {
				return usageErr("want at least one REFERENCE (or --from FILE)")
			}
			platforms, all, err := parsePlatforms(*platform)
			if err != nil {
				return err
			}
			if all {
				return usageErr("--platform all: name the platforms to pin")
			}
			lf, err := resolveLock(ctx, e, rf, refs, platforms)
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(lf, "", "  ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			if *out == "" {
				_, err = e.stdout.Write(b)
				return err
			}
			return writeFileAtomically(*out, func(w io.Writer) error { _, err := w.Write(b); return err })
		}
	},
}

// readReferenceList reads references, one a line.
func readReferenceList(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var refs []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			refs = append(refs, line)
		}
	}
	return refs, sc.Err()
}

// resolveLock resolves each reference with one HEAD (and, for an index
// with platforms to pin, one GET of it), one Registry per host so that
// connections and tokens are shared.
func resolveLock(ctx context.Context, e *env, rf *remoteFlags, refs []string, platforms []v1.Platform) (*lockFile, error) {
	regs := map[string]*registry.Registry{}
	lf := &lockFile{Version: 1}
	seen := map[string]bool{}
	for _, s := range refs {
		if seen[s] {
			continue
		}
		seen[s] = true
		ref, err := parseRef(s)
		if err != nil {
			return nil, err
		}
		var c *registry.Client
		if reg := regs[ref.Host]; reg != nil {
			c = reg.Repository(ref.Repository)
		} else {
			if len(regs) > 0 && *rf.passwordStdin {
				return nil, usageErr("--password-stdin logs in to one registry: for several, use Docker's config.json")
			}
			if c, err = rf.client(ref, e); err != nil {
				return nil, err
			}
			regs[ref.Host] = c.Registry()
		}
		img, err := lockOne(ctx, rf, c, ref, platforms)
		if err != nil {
			return nil, err
		}
		img.Reference = s
		lf.Images = append(lf.Images, img)
	}
	sort.Slice(lf.Images, func(i, j int) bool { return lf.Images[i].Reference < lf.Images[j].Reference })
	return lf, nil
}

func lockOne(ctx context.Context, rf *remoteFlags, c *registry.Client, ref registry.Reference, platforms []v1.Platform) (lockImage, error) {
	mctx, cancel := rf.metadataContext(ctx)
	defer cancel()
	desc, err := c.Resolve(mctx, ref.TagOrDigest())
	if err != nil {
		return lockImage{}, err
	}
	name := ref
	name.Digest = ""
	img := lockImage{Name: name.String(), Digest: desc.Digest, MediaType: desc.MediaType, Size: desc.Size}
	if len(platforms) == 0 || !isIndexType(desc.MediaType) {
		return img, nil
	}
	got, err := c.Read(mctx, string(desc.Digest))
	if err != nil {
		return lockImage{}, err
	}
	idx, ok := got.(*oci.Index)
	if !ok {
		return img, nil
	}
	for _, p := range platforms {
		d, err := idx.SelectPlatform(p)
		if err != nil {
			return lockImage{}, fmt.Errorf("%s: %w", ref, err)
		}
		img.Platforms = append(img.Platforms, lockPlatform{Platform: oci.PlatformString(p), Digest: d.Digest, MediaType: d.MediaType, Size: d.Size})
	}
	sort.Slice(img.Platforms, func(i, j int) bool { return img.Platforms[i].Platform < img.Platforms[j].Platform })
	return img, nil
}

func isIndexType(mt string) bool {
	return mt == v1.MediaTypeImageIndex || mt == "application/vnd.docker.distribution.manifest.list.v2+json"
}

// readLock reads a lockfile, refusing what is not one.
func readLock(path string) (*lockFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var lf lockFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&lf); err != nil || lf.Version != 1 {
		return nil, fmt.Errorf("%s: not an ocipull lockfile (version 1): %v", safe(path), err)
	}
	for _, img := range lf.Images {
		if oci.ValidateDigest(img.Digest) != nil {
			return nil, fmt.Errorf("%s: %s: invalid digest", safe(path), safe(img.Reference))
		}
		for _, p := range img.Platforms {
			if oci.ValidateDigest(p.Digest) != nil {
				return nil, fmt.Errorf("%s: %s: %s: invalid digest", safe(path), safe(img.Reference), safe(p.Platform))
			}
		}
	}
	return &lf, nil
}

// pullLocked pulls every image a lockfile pins into the layout at dest,
// by digest, and fails when an index no longer selects a pinned
// platform's manifest.
func pullLocked(ctx context.Context, e *env, rf *remoteFlags, lockPath, dest string, po pullOptions) error {
	lf, err := readLock(lockPath)
	if err != nil {
		return err
	}
	regs := map[string]*registry.Registry{}
	for _, img := range lf.Images {
		named, err := parseRef(img.Name)
		if err != nil {
			return fmt.Errorf("%s: %w", safe(lockPath), err)
		}
		ref := named
		ref.Tag, ref.Digest = "", img.Digest
		var c *registry.Client
		if reg := regs[ref.Host]; reg != nil {
			c = reg.Repository(ref.Repository)
		} else {
			if c, err = rf.client(ref, e); err != nil {
				return err
			}
			c.Registry().MaxConnsPerHost = po.jobs
			regs[ref.Host] = c.Registry()
		}
		one := po
		one.name = named.Tag
		one.platforms = nil
		for _, p := range img.Platforms {
			pl, err := oci.ParsePlatform(p.Platform)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", safe(lockPath), safe(img.Reference), err)
			}
			one.platforms = append(one.platforms, pl)
		}
		got, err := pull(ctx, c, ref, dest, one, e)
		if err != nil {
			return err
		}
		if len(img.Platforms) == 1 && got.Digest() != img.Platforms[0].Digest {
			return fmt.Errorf("%s: %s: %s: the index selects %s, the lock pins %s", safe(lockPath), safe(img.Reference),
				img.Platforms[0].Platform, got.Digest(), img.Platforms[0].Digest)
		}
		if idx, ok := got.(*oci.Index); ok {
			for _, p := range img.Platforms {
				pl, _ := oci.ParsePlatform(p.Platform)
				d, err := idx.SelectPlatform(pl)
				if err != nil || d.Digest != p.Digest {
					return fmt.Errorf("%s: %s: %s: the index selects %s, the lock pins %s", safe(lockPath), safe(img.Reference), p.Platform, d.Digest, p.Digest)
				}
			}
		}
	}
	return nil
}
