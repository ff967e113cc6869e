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
	Referrers []lockReferrer `json:"referrers,omitempty"`
}

// lockReferrer pins one referrer (a signature, an SBOM, an attestation)
// of a pinned manifest, or of another referrer, by digest.
type lockReferrer struct {
	Subject      digest.Digest `json:"subject"`
	Digest       digest.Digest `json:"digest"`
	MediaType    string        `json:"mediaType"`
	ArtifactType string        `json:"artifactType,omitempty"`
	Size         int64         `json:"size"`
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
		refFlags := addReferrerFlags(f, "also pin the referrers (signatures, SBOMs, attestations) of each pinned manifest, and theirs; pull --lock then carries exactly those",
			"with --referrers: only referrers of these `TYPES` (comma list) of the pinned manifests (theirs are all pinned)")
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
			referrers, types, err := refFlags.value()
			if err != nil {
				return err
			}
			lo := lockOptions{platforms: platforms, referrers: referrers, artifactTypes: types}
			lf, err := resolveLock(ctx, e, rf, refs, lo)
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

// lockOptions are what `ocipull lock` pins beyond each reference's digest.
type lockOptions struct {
	platforms     []v1.Platform
	referrers     bool
	artifactTypes []string
}

// resolveLock resolves each reference with one HEAD (and, for an index
// with platforms to pin, one GET of it), one Registry per host so that
// connections and tokens are shared.
func resolveLock(ctx context.Context, e *env, rf *remoteFlags, refs []string, lo lockOptions) (*lockFile, error) {
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
		img, err := lockOne(ctx, rf, c, ref, lo)
		if err != nil {
			return nil, err
		}
		img.Reference = s
		lf.Images = append(lf.Images, img)
	}
	sort.Slice(lf.Images, func(i, j int) bool { return lf.Images[i].Reference < lf.Images[j].Reference })
	return lf, nil
}

// lockOne pins one reference: one HEAD; for an index, one GET of it when
// platforms are pinned or referrers are (the referrers of its children
// are pinned too: of the pinned platforms' manifests, or of every child).
func lockOne(ctx context.Context, rf *remoteFlags, c *registry.Client, ref registry.Reference, lo lockOptions) (lockImage, error) {
	mctx, cancel := rf.metadataContext(ctx)
	defer cancel()
	desc, err := c.Resolve(mctx, ref.TagOrDigest())
	if err != nil {
		return lockImage{}, err
	}
	name := ref
	name.Digest = ""
	img := lockImage{Name: name.String(), Digest: desc.Digest, MediaType: desc.MediaType, Size: desc.Size}
	roots := []digest.Digest{desc.Digest}
	if (len(lo.platforms) > 0 || lo.referrers) && isIndexType(desc.MediaType) {
		got, err := c.Read(mctx, string(desc.Digest))
		if err != nil {
			return lockImage{}, err
		}
		if idx, ok := got.(*oci.Index); ok {
			for _, p := range lo.platforms {
				d, err := idx.SelectPlatform(p)
				if err != nil {
					return lockImage{}, fmt.Errorf("%s: %w", ref, err)
				}
				img.Platforms = append(img.Platforms, lockPlatform{Platform: oci.PlatformString(p), Digest: d.Digest, MediaType: d.MediaType, Size: d.Size})
				roots = append(roots, d.Digest)
			}
			if len(lo.platforms) == 0 {
				for _, d := range idx.Manifests() {
					roots = append(roots, d.Digest)
				}
			}
		}
		sort.Slice(img.Platforms, func(i, j int) bool { return img.Platforms[i].Platform < img.Platforms[j].Platform })
	}
	if lo.referrers {
		found, err := findReferrers(mctx, c, roots, lo.artifactTypes)
		if err != nil {
			return lockImage{}, fmt.Errorf("%s: %w", ref, err)
		}
		for _, f := range found {
			img.Referrers = append(img.Referrers, lockReferrer{Subject: f.subject, Digest: f.desc.Digest,
				MediaType: f.desc.MediaType, ArtifactType: f.desc.ArtifactType, Size: f.desc.Size})
		}
		sort.Slice(img.Referrers, func(i, j int) bool { return img.Referrers[i].Digest < img.Referrers[j].Digest })
	}
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
		if len(img.Referrers) > maxCarriedReferrers {
			return nil, fmt.Errorf("%s: %s: more than %d referrers", safe(path), safe(img.Reference), maxCarriedReferrers)
		}
		for _, r := range img.Referrers {
			if oci.ValidateDigest(r.Digest) != nil || oci.ValidateDigest(r.Subject) != nil {
				return nil, fmt.Errorf("%s: %s: referrer: invalid digest", safe(path), safe(img.Reference))
			}
		}
	}
	return &lf, nil
}

// pullLocked pulls every image a lockfile pins into the layout at dest,
// by digest, with the referrers it pins (each read by digest, verified,
// and refused unless it names the pinned subject), and fails when an
// index no longer selects a pinned platform's manifest.
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
			c.Registry().MaxConnsPerHost = po.jobs + registry.RangedFetchConns
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
		if len(img.Referrers) > 0 {
			l, err := oci.OpenLayout(dest)
			if err != nil {
				return err
			}
			var found []foundReferrer
			for _, r := range img.Referrers {
				if err := writeReferrer(ctx, c, l, r.Subject, r.Digest); err != nil {
					return fmt.Errorf("%s: %s: %w", safe(lockPath), safe(img.Reference), err)
				}
				found = append(found, foundReferrer{subject: r.Subject,
					desc: v1.Descriptor{MediaType: r.MediaType, ArtifactType: r.ArtifactType, Digest: r.Digest, Size: r.Size}})
			}
			if err := tagReferrers(ctx, l, found); err != nil {
				return err
			}
			if !po.quiet {
				fmt.Fprintf(e.stderr, "%s carried\n", plural(len(img.Referrers), "referrer", "referrers"))
			}
		}
	}
	return nil
}
