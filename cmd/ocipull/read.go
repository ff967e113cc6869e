package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

var manifestCommand = &command{
	name: "manifest", args: "REFERENCE|oci:DIR[:NAME]", min: 0, max: 1,
	summary:  "print a manifest's exact bytes (verified against its digest)",
	examples: []string{"ocipull manifest ghcr.io/org/app:v1 | jq .", "ocipull manifest -p linux/arm64 ghcr.io/org/app:v1"},
	define: func(f *flags, e *env) func(context.Context) error {
		rf := addRemoteFlags(f)
		platform := f.String("platform", "p", "", "print the manifest of the image for the `PLATFORM` (os/arch[/variant]) of an index")
		layout := layoutFlag(f)
		return func(ctx context.Context) error {
			t, ctx, cancel, err := readTarget(ctx, e, rf, *layout)
			if err != nil {
				return err
			}
			defer cancel()
			got, err := t.readPlatform(ctx, *platform)
			if err != nil {
				return err
			}
			return writeDocument(e.stdout, got.RawManifest())
		}
	},
}

var configCommand = &command{
	name: "config", args: "REFERENCE|oci:DIR[:NAME]", min: 0, max: 1,
	summary:  "print an image's config blob, exact bytes, verified",
	examples: []string{"ocipull config -p linux/amd64 docker.io/library/alpine:3.20"},
	define: func(f *flags, e *env) func(context.Context) error {
		rf := addRemoteFlags(f)
		platform := f.String("platform", "p", "", "the image for the `PLATFORM` (os/arch[/variant]) of an index (default: this machine's)")
		layout := layoutFlag(f)
		return func(ctx context.Context) error {
			t, ctx, cancel, err := readTarget(ctx, e, rf, *layout)
			if err != nil {
				return err
			}
			defer cancel()
			got, err := t.readPlatform(ctx, *platform)
			if err != nil {
				return err
			}
			img, ok := got.(*oci.Image)
			if !ok {
				if img, err = oci.ImageForPlatform(ctx, got, oci.DefaultPlatform()); err != nil {
					return fmt.Errorf("%w (an index: pick an image with --platform)", err)
				}
			}
			b, err := img.ReadBlob(ctx, img.Config(), oci.MaxManifestSize)
			if err != nil {
				return err
			}
			return writeDocument(e.stdout, b)
		}
	},
}

var digestCommand = &command{
	name: "digest", args: "REFERENCE|oci:DIR[:NAME]", min: 0, max: 1,
	summary:  "print the digest a reference names (one HEAD request)",
	examples: []string{"ocipull digest ghcr.io/org/app:v1", "ocipull digest -p linux/arm64 ghcr.io/org/app:v1"},
	define: func(f *flags, e *env) func(context.Context) error {
		rf := addRemoteFlags(f)
		platform := f.String("platform", "p", "", "the digest of the image for the `PLATFORM` (os/arch[/variant]) of an index")
		layout := layoutFlag(f)
		return func(ctx context.Context) error {
			t, ctx, cancel, err := readTarget(ctx, e, rf, *layout)
			if err != nil {
				return err
			}
			defer cancel()
			d, err := targetDigest(ctx, t, *platform)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, d)
			return nil
		}
	},
}

// targetDigest is one HEAD for a remote reference; with a platform, the
// index is read and the child's digest taken from it.
func targetDigest(ctx context.Context, t *target, platform string) (digest.Digest, error) {
	if t.client != nil && platform == "" {
		desc, err := t.client.Resolve(ctx, t.ref.TagOrDigest())
		return desc.Digest, err
	}
	var p v1.Platform
	if platform != "" {
		var err error
		if p, err = oci.ParsePlatform(platform); err != nil {
			return "", usageErr("--platform: %v", err)
		}
	}
	ref, err := t.read(ctx)
	if err != nil {
		return "", err
	}
	if platform == "" {
		return ref.Digest(), nil
	}
	if idx, ok := ref.(*oci.Index); ok {
		d, err := idx.SelectPlatform(p) // the child's digest, without reading it
		return d.Digest, err
	}
	img, err := oci.ImageForPlatform(ctx, ref, p)
	if err != nil {
		return "", err
	}
	return img.Digest(), nil
}

var blobCommand = &command{
	name: "blob", args: "REFERENCE@DIGEST", min: 1, max: 1,
	summary:  "download one blob, verified, to a file or standard output",
	examples: []string{"ocipull blob ghcr.io/org/app@sha256:4f1c... -o layer.tar.gz"},
	define: func(f *flags, e *env) func(context.Context) error {
		rf := addRemoteFlags(f)
		out := f.String("output", "o", "", "write to this `FILE` (created when verified; default: standard output, not a terminal)")
		return func(ctx context.Context) error {
			ref, err := parseRef(e.args[0])
			if err != nil {
				return err
			}
			if ref.Digest == "" {
				return usageErr("want REPOSITORY@DIGEST, got no digest in %s", ref)
			}
			if *out == "" && isTerminal(e.stdout) {
				return usageErr("a blob is binary: give -o FILE or redirect standard output")
			}
			c, err := rf.client(ref, e)
			if err != nil {
				return err
			}
			mctx, cancel := rf.metadataContext(ctx)
			desc, err := c.StatBlob(mctx, ref.Digest)
			cancel()
			if err != nil {
				return err
			}
			return downloadBlob(ctx, c, desc, *out, e.stdout)
		}
	},
}

// downloadBlob writes the verified blob to path or, when path is empty,
// streams it to w.
//
// To a file: the bytes land in path + ".partial", which an interrupted
// run leaves; the next run resumes it with a Range request (the prefix on
// disk is read back and hashed with the rest), and only a verified whole
// is renamed to path. Bytes that do not verify remove the partial file.
//
// To w: the bytes go out as they arrive and verify, all but the last read
// of them, which is held until the whole blob matched its digest (as the
// pull-through cache does): a consumer never sees the clean end of wrong
// content, and the command exits 1.
func downloadBlob(ctx context.Context, c *registry.Client, desc v1.Descriptor, path string, w io.Writer) error {
	if path == "" {
		rc, err := c.OpenBlob(ctx, desc)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(w, rc)
		return err
	}
	partial := path + ".partial"
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", safe(partial))
	}
	have := st.Size()
	if have >= desc.Size {
		have = 0 // longer than the blob: not ours to trust
	}
	remote, err := c.Source().BlobAt(ctx, desc, have)
	if err != nil && have > 0 {
		have = 0 // the registry will not resume: start over
		remote, err = c.Source().BlobAt(ctx, desc, 0)
	}
	if err != nil {
		return err
	}
	defer remote.Close()
	if err := f.Truncate(have); err != nil {
		return err
	}
	landed := &offsetWriter{f: f, off: have}
	vr, err := oci.NewVerifyReader(io.NopCloser(io.MultiReader(io.NewSectionReader(f, 0, have), io.TeeReader(remote, landed))), desc)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, vr); err != nil {
		if errors.Is(err, oci.ErrDigestMismatch) || errors.Is(err, oci.ErrSizeMismatch) {
			f.Close()
			os.Remove(partial)
		}
		return err
	}
	if landed.err != nil {
		return landed.err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(partial, path)
}

// offsetWriter writes at a moving offset of f, remembering the first error.
type offsetWriter struct {
	f   *os.File
	off int64
	err error
}

func (o *offsetWriter) Write(p []byte) (int, error) {
	if o.err != nil {
		return len(p), nil
	}
	n, err := o.f.WriteAt(p, o.off)
	o.off += int64(n)
	if err != nil {
		o.err = err
	}
	return len(p), nil
}

var tagsCommand = &command{
	name: "tags", args: "REPOSITORY|oci:DIR", min: 0, max: 1,
	summary:  "list every tag of a repository, or the names in a layout",
	examples: []string{"ocipull tags ghcr.io/org/app", "ocipull tags --layout ./app"},
	define: func(f *flags, e *env) func(context.Context) error {
		rf := addRemoteFlags(f)
		layout := f.String("layout", "", "", "list the names in the OCI layout at this `DIR` instead of a registry's tags")
		return func(ctx context.Context) error {
			t, ctx, cancel, err := readTarget(ctx, e, rf, *layout)
			if err != nil {
				return err
			}
			defer cancel()
			if t.layout != nil {
				idx, err := t.layout.Index()
				if err != nil {
					return err
				}
				seen := map[string]bool{}
				var names []string
				for _, d := range idx.Manifests {
					if n := d.Annotations[v1.AnnotationRefName]; n != "" && !seen[n] {
						seen[n] = true
						names = append(names, n)
					}
				}
				sort.Strings(names)
				for _, n := range names {
					fmt.Fprintln(e.stdout, safe(n))
				}
				return nil
			}
			return printNames(e.stdout, t.client.ListTags(ctx, 0))
		}
	},
}

var catalogCommand = &command{
	name: "catalog", args: "HOST", min: 1, max: 1,
	summary:  "list a registry's repositories (where the registry offers its catalog)",
	examples: []string{"ocipull catalog localhost:5000"},
	define: func(f *flags, e *env) func(context.Context) error {
		rf := addRemoteFlags(f)
		return func(ctx context.Context) error {
			host := e.args[0]
			if strings.ContainsAny(host, "/@") {
				return usageErr("want a registry HOST[:PORT], got %q", safe(host))
			}
			ref, err := parseRef(host + "/catalog")
			if err != nil {
				return err
			}
			c, err := rf.client(ref, e)
			if err != nil {
				return err
			}
			ctx, cancel := rf.metadataContext(ctx)
			defer cancel()
			return printNames(e.stdout, c.Registry().ListRepositories(ctx, 0))
		}
	},
}

var referrersCommand = &command{
	name: "referrers", args: "REFERENCE|oci:DIR[:NAME]", min: 0, max: 1,
	summary:  "list the manifests that refer to a manifest (signatures, SBOMs, attestations)",
	examples: []string{"ocipull referrers ghcr.io/org/app:v1 --artifact-type application/vnd.dev.sigstore.bundle.v0.3+json"},
	define: func(f *flags, e *env) func(context.Context) error {
		rf := addRemoteFlags(f)
		artifactType := f.String("artifact-type", "", "", "only referrers of this artifact `TYPE`")
		asJSON := f.Bool("json", "", "print the descriptors as JSON")
		layout := layoutFlag(f)
		return func(ctx context.Context) error {
			t, ctx, cancel, err := readTarget(ctx, e, rf, *layout)
			if err != nil {
				return err
			}
			defer cancel()
			var refs []v1.Descriptor
			if t.client != nil {
				subject := t.ref.Digest
				if subject == "" {
					d, err := t.client.Resolve(ctx, t.ref.TagOrDigest())
					if err != nil {
						return err
					}
					subject = d.Digest
				}
				refs, err = t.client.Referrers(ctx, subject, *artifactType)
			} else {
				refs, err = layoutReferrers(ctx, t, *artifactType)
			}
			if err != nil {
				return err
			}
			if *asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(refs)
			}
			for _, d := range refs {
				at := d.ArtifactType
				if at == "" {
					at = "-"
				}
				fmt.Fprintf(e.stdout, "%s %9s %s\n", d.Digest, humanBytes(d.Size), safe(at))
			}
			return nil
		}
	},
}

// printNames prints a listing, one sanitised name a line, as it comes.
func printNames(w io.Writer, names iter.Seq2[string, error]) error {
	for name, err := range names {
		if err != nil {
			return err
		}
		fmt.Fprintln(w, safe(name))
	}
	return nil
}

// layoutReferrers finds, among the manifests a layout's index.json lists
// (and their children), those whose subject is the target's.
func layoutReferrers(ctx context.Context, t *target, artifactType string) ([]v1.Descriptor, error) {
	subject, err := t.read(ctx)
	if err != nil {
		return nil, err
	}
	idx, err := t.layout.Index()
	if err != nil {
		return nil, err
	}
	out := []v1.Descriptor{}
	seen := map[digest.Digest]bool{}
	for _, entry := range idx.Manifests {
		entry.Annotations = nil
		ref, err := oci.LoadRef(ctx, t.layout, entry)
		if err != nil {
			continue
		}
		oci.Walk(ctx, ref, func(r oci.Ref) error {
			var subj *v1.Descriptor
			var at string
			var ann map[string]string
			switch m := r.(type) {
			case *oci.Image:
				mf := m.Manifest()
				subj, at, ann = mf.Subject, mf.ArtifactType, mf.Annotations
				if at == "" {
					at = mf.Config.MediaType
				}
			case *oci.Index:
				ix := m.Index()
				subj, at, ann = ix.Subject, ix.ArtifactType, ix.Annotations
			}
			if subj != nil && subj.Digest == subject.Digest() && (artifactType == "" || at == artifactType) && !seen[r.Digest()] {
				seen[r.Digest()] = true
				d := r.Descriptor()
				d.ArtifactType, d.Annotations = at, ann
				out = append(out, d)
			}
			return nil
		})
	}
	return out, nil
}

// writeDocument writes a manifest or config: its exact bytes to a pipe or
// file; on a terminal, with every character that could drive the
// terminal written as a JSON \u escape (the same JSON, not the same bytes).
func writeDocument(w io.Writer, b []byte) error {
	if !isTerminal(w) {
		_, err := w.Write(b)
		return err
	}
	_, err := io.WriteString(w, terminalJSON(b))
	return err
}

// terminalJSON is a JSON document as a terminal may show it: every
// control, C1, format (bidi) or invalid character as a \u escape, which
// JSON reads as the same string; a final newline.
func terminalJSON(b []byte) string {
	var sb strings.Builder
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			sb.WriteString(`\ufffd`)
		case r == '\n' || r == '\t':
			sb.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || unicode.Is(unicode.Cf, r):
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			sb.WriteRune(r)
		}
		i += n
	}
	if !strings.HasSuffix(sb.String(), "\n") {
		sb.WriteString("\n")
	}
	return sb.String()
}
