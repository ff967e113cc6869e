package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry/internal/safetext"
	"github.com/ocipull/registry/oci"
)

// inspection is what inspect prints, and its --json form.
type inspection struct {
	Reference string          `json:"reference"`
	Digest    string          `json:"digest"`
	MediaType string          `json:"mediaType"`
	Size      int64           `json:"size"`
	Platforms []string        `json:"platforms,omitempty"`
	Manifests []v1.Descriptor `json:"manifests,omitempty"`
	Platform  string          `json:"platform,omitempty"`
	Created   string          `json:"created,omitempty"`
	Config    *v1.Descriptor  `json:"config,omitempty"`
	Layers    []v1.Descriptor `json:"layers,omitempty"`
}

func cmdInspect(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("inspect", "[flags] REFERENCE", stderr)
	var rf remoteFlags
	rf.register(fs)
	platform := fs.String("platform", "", "inspect the image for os/arch[/variant] of an index")
	asJSON := fs.Bool("json", false, "print JSON")
	ref, c, err := rf.parse(fs, args, stdin, "REFERENCE")
	if err != nil {
		return err
	}
	ctx, cancel := rf.metadataContext(ctx)
	defer cancel()
	got, err := c.Read(ctx, ref.TagOrDigest())
	if err != nil {
		return fmt.Errorf("inspect %s: %w", ref, err)
	}
	if *platform != "" {
		p, err := oci.ParsePlatform(*platform)
		if err != nil {
			return usageErr("--platform: %v", err)
		}
		if got, err = oci.ImageForPlatform(ctx, got, p); err != nil {
			return fmt.Errorf("inspect %s: %w", ref, err)
		}
	}
	in := inspection{Reference: ref.String(), Digest: string(got.Digest()), MediaType: got.Descriptor().MediaType, Size: got.Descriptor().Size}
	switch r := got.(type) {
	case *oci.Index:
		in.Manifests = r.Manifests()
		for _, d := range r.Manifests() {
			if d.Platform != nil {
				in.Platforms = append(in.Platforms, oci.PlatformString(*d.Platform))
			}
		}
	case *oci.Image:
		cfgDesc := r.Config()
		in.Config, in.Layers = &cfgDesc, r.Layers()
		if cfg, err := r.ReadConfig(ctx); err == nil {
			in.Platform = oci.PlatformString(cfg.Platform)
			if cfg.Created != nil {
				in.Created = cfg.Created.UTC().Format("2006-01-02T15:04:05Z")
			}
		}
	}
	if *asJSON {
		// encoding/json escapes control characters; the text form below
		// sanitises each registry-controlled field.
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(in)
	}
	fmt.Fprintf(stdout, "reference  %s\ndigest     %s\nmedia type %s\nsize       %d\n", in.Reference, in.Digest, safe(in.MediaType), in.Size)
	for i, p := range in.Platforms {
		fmt.Fprintf(stdout, "platform   %-20s %s\n", safe(p), in.Manifests[i].Digest)
	}
	if in.Config != nil {
		if in.Platform != "" {
			fmt.Fprintf(stdout, "platform   %s\n", safe(in.Platform))
		}
		if in.Created != "" {
			fmt.Fprintf(stdout, "created    %s\n", in.Created)
		}
		fmt.Fprintf(stdout, "config     %s %s\n", in.Config.Digest, humanBytes(in.Config.Size))
		var total int64
		for _, l := range in.Layers {
			fmt.Fprintf(stdout, "layer      %s %9s %s\n", l.Digest, humanBytes(l.Size), safe(l.MediaType))
			total += l.Size
		}
		fmt.Fprintf(stdout, "layers     %d, %s\n", len(in.Layers), humanBytes(total))
	}
	return nil
}

func cmdTags(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("tags", "[flags] REPOSITORY", stderr)
	var rf remoteFlags
	rf.register(fs)
	ref, c, err := rf.parse(fs, args, stdin, "REPOSITORY")
	if err != nil {
		return err
	}
	ctx, cancel := rf.metadataContext(ctx)
	defer cancel()
	for tag, err := range c.ListTags(ctx, 0) {
		if err != nil {
			return fmt.Errorf("tags %s/%s: %w", ref.Host, ref.Repository, err)
		}
		fmt.Fprintln(stdout, safe(tag))
	}
	return nil
}

// safe sanitises a registry-controlled string for the terminal.
func safe(s string) string { return safetext.String(s, 256) }
