package oci

import (
	"context"
	"fmt"
	"runtime"
	"strings"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultPlatform is the platform of the running program: runtime.GOOS and
// runtime.GOARCH, with the architecture's default variant.
func DefaultPlatform() v1.Platform {
	return v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
}

// ParsePlatform parses "os/arch" or "os/arch/variant", as in "linux/arm64/v8".
func ParsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch or os/arch/variant", truncate(s))
	}
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, " \t") {
			return v1.Platform{}, fmt.Errorf("platform %q: empty or blank component", truncate(s))
		}
	}
	p := v1.Platform{OS: strings.ToLower(parts[0]), Architecture: strings.ToLower(parts[1])}
	if len(parts) == 3 {
		p.Variant = strings.ToLower(parts[2])
	}
	return p, nil
}

// PlatformString formats p as os/arch[/variant][:os.version].
func PlatformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	if p.OSVersion != "" {
		s += ":" + p.OSVersion
	}
	return s
}

// normalize folds architecture aliases and fills in default variants: arm64
// means arm64/v8 and arm means arm/v7, as in the image-spec's platform
// table and containerd's matcher.
func normalize(p v1.Platform) v1.Platform {
	p.OS = strings.ToLower(p.OS)
	p.Architecture = strings.ToLower(p.Architecture)
	p.Variant = strings.ToLower(p.Variant)
	switch p.Architecture {
	case "x86_64", "x86-64":
		p.Architecture = "amd64"
	case "aarch64":
		p.Architecture = "arm64"
	case "armhf":
		p.Architecture, p.Variant = "arm", "v7"
	case "armel":
		p.Architecture, p.Variant = "arm", "v6"
	}
	switch {
	case p.Architecture == "arm64" && p.Variant == "":
		p.Variant = "v8"
	case p.Architecture == "arm" && p.Variant == "":
		p.Variant = "v7"
	case p.Architecture == "amd64" && p.Variant == "v1":
		p.Variant = ""
	}
	return p
}

// matchPlatform reports whether have satisfies want: same OS and
// architecture, the same variant after defaults (arm64 is v8, arm is v7;
// for other architectures an empty wanted variant accepts any), and, when
// want names an OS version (Windows), the same OS version.
func matchPlatform(want, have v1.Platform) bool {
	w, h := normalize(want), normalize(have)
	if w.OS != h.OS || w.Architecture != h.Architecture {
		return false
	}
	if w.Variant != "" && w.Variant != h.Variant {
		return false
	}
	if w.OSVersion != "" && w.OSVersion != h.OSVersion {
		return false
	}
	return true
}

// SelectPlatform returns the first child of the index whose platform matches
// want (same os, architecture, variant with arm64 defaulting to v8 and arm to v7, and os.version for Windows); the index's order is its preference. When none
// matches, the error wraps [ErrNoMatchingPlatform] and lists the platforms
// the index offers.
func (x *Index) SelectPlatform(want v1.Platform) (v1.Descriptor, error) {
	var offered []string
	for _, d := range x.index.Manifests {
		if d.Platform == nil {
			continue
		}
		if matchPlatform(want, *d.Platform) {
			return d, nil
		}
		if d.Platform.OS != "unknown" {
			offered = append(offered, PlatformString(*d.Platform))
		}
	}
	return v1.Descriptor{}, fmt.Errorf("index %s: %w for %s; offered: [%s]",
		x.desc.Digest, ErrNoMatchingPlatform, PlatformString(want), strings.Join(offered, ", "))
}

// ImageForPlatform resolves ref to the image for want: an index selects its
// matching child ([Index.SelectPlatform]), nested indexes included, and is
// trusted for it; a plain image is returned when its config's platform
// matches (this reads the config blob). The error wraps [ErrNoMatchingPlatform] when nothing fits.
func ImageForPlatform(ctx context.Context, ref Ref, want v1.Platform) (*Image, error) {
	selected := false
	for {
		switch r := ref.(type) {
		case *Image:
			if selected {
				// The index's platform field chose it; the config is not re-read.
				return r, nil
			}
			cfg, err := r.ReadConfig(ctx)
			if err != nil {
				return nil, err
			}
			have := v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant, OSVersion: cfg.OSVersion}
			if !matchPlatform(want, have) {
				return nil, fmt.Errorf("image %s: %w for %s; the image is %s",
					r.Digest(), ErrNoMatchingPlatform, PlatformString(want), PlatformString(have))
			}
			return r, nil
		case *Index:
			d, err := r.SelectPlatform(want)
			if err != nil {
				return nil, err
			}
			if ref, err = r.Child(ctx, d); err != nil {
				return nil, err
			}
			selected = true
		default:
			return nil, fmt.Errorf("%w: %T", ErrUnsupportedMediaType, ref)
		}
	}
}
