package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

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

var inspectCommand = &command{
	name: "inspect", args: "REFERENCE|oci:DIR[:NAME]", min: 0, max: 1,
	summary:  "show a manifest: digest, media type, platforms, config and layers",
	examples: []string{"ocipull inspect ghcr.io/org/app:v1 --json", "ocipull inspect oci:./app:v1 -p linux/arm64"},
	define: func(f *flags, e *env) func(context.Context) error {
		rf := addRemoteFlags(f)
		platform := f.String("platform", "p", "", "inspect the image for the `PLATFORM` (os/arch[/variant]) of an index")
		asJSON := f.Bool("json", "", "print JSON")
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
			in := inspect(ctx, t.String(), got)
			if *asJSON {
				// encoding/json escapes control characters; the text form
				// sanitises each registry-controlled field.
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(in)
			}
			in.print(e.stdout)
			return nil
		}
	},
}

// argOr is args[i], or "" when there are fewer.
func argOr(args []string, i int) string {
	if i < len(args) {
		return args[i]
	}
	return ""
}

func inspect(ctx context.Context, name string, got oci.Ref) inspection {
	in := inspection{Reference: name, Digest: string(got.Digest()), MediaType: got.Descriptor().MediaType, Size: got.Descriptor().Size}
	switch r := got.(type) {
	case *oci.Index:
		in.Manifests = r.Manifests()
		for _, d := range r.Manifests() {
			if d.Platform != nil {
				in.Platforms = append(in.Platforms, oci.PlatformString(*d.Platform))
			} else {
				in.Platforms = append(in.Platforms, "-")
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
	return in
}

func (in inspection) print(w io.Writer) {
	fmt.Fprintf(w, "reference  %s\ndigest     %s\nmedia type %s\nsize       %d\n", safe(in.Reference), in.Digest, safe(in.MediaType), in.Size)
	for i, p := range in.Platforms {
		fmt.Fprintf(w, "platform   %-20s %s\n", safe(p), in.Manifests[i].Digest)
	}
	if in.Config == nil {
		return
	}
	if in.Platform != "" {
		fmt.Fprintf(w, "platform   %s\n", safe(in.Platform))
	}
	if in.Created != "" {
		fmt.Fprintf(w, "created    %s\n", in.Created)
	}
	fmt.Fprintf(w, "config     %s %s\n", in.Config.Digest, humanBytes(in.Config.Size))
	var total int64
	for _, l := range in.Layers {
		fmt.Fprintf(w, "layer      %s %9s %s\n", l.Digest, humanBytes(l.Size), safe(l.MediaType))
		total += l.Size
	}
	fmt.Fprintf(w, "layers     %s, %s\n", plural(len(in.Layers), "layer", "layers"), humanBytes(total))
}
