package oci

import (
	"context"
	"fmt"
	"runtime"
	"strings"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultPlatform is the platform of the running program: runtime.GOOS
// and runtime.GOARCH, with the variant this machine runs where it can be
// told (on Linux, the amd64 level from the CPU's features, as containerd
// detects it; the arm variant from the CPU architecture), so that an
// index's best child for this host is chosen ([PlatformRank]). Ask for a
// platform explicitly to override it.
func DefaultPlatform() v1.Platform {
	return v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH, Variant: hostVariant()}
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

// matchPlatform reports whether have can run where want is asked for
// (see [PlatformRank]).
func matchPlatform(want, have v1.Platform) bool { return PlatformRank(want, have) > 0 }

// PlatformRank says how well an image of platform have serves a request
// for want: 0 when it cannot run there, else higher for a better fit. The
// OS and architecture must be the same (after aliases: x86_64 is amd64,
// aarch64 is arm64). Then, as containerd's matcher orders candidates:
//
//   - amd64 levels: an image of a level up to the one asked for runs
//     (v3 asked: v3, then v2, then v1); never a higher one ("linux/amd64"
//     asks for the baseline, v1).
//   - arm: variants down from the one asked for (v7 asked: v7, v6, v5);
//     arm64: v8.x up to the one asked for (v8 is v8.0).
//   - Windows: with an os.version asked for, the same major, minor and
//     build, the highest revision first; other OSes ignore os.version.
//   - Other architectures: the variant asked for, or any when none is.
//   - After every native candidate, 32-bit images their 64-bit host runs:
//     386 for amd64, arm v8 down to v5 for arm64.
//
// An exact match ranks highest.
func PlatformRank(want, have v1.Platform) int {
	w, h := normalize(want), normalize(have)
	if w.OS != h.OS {
		return 0
	}
	if w.Architecture != h.Architecture {
		// 32-bit images run on their 64-bit hosts, after every native one.
		return compatRank(w, h) * 1_000_000
	}
	r := variantRank(w, h)
	if r == 0 {
		return 0
	}
	if w.OS == "windows" && w.OSVersion != "" {
		rev, ok := sameWindowsBuild(w.OSVersion, h.OSVersion)
		if !ok {
			return 0
		}
		// The variant rank first, the revision within it.
		return r*1_000_000 + min(rev, 999_999)
	}
	return r * 1_000_000
}

// compatRank ranks a 32-bit image on a 64-bit request, as containerd's
// matcher does: 386 on amd64, arm v8 down to v5 on arm64; 0 otherwise.
func compatRank(w, h v1.Platform) int {
	switch {
	case w.Architecture == "amd64" && h.Architecture == "386":
		return 1
	case w.Architecture == "arm64" && h.Architecture == "arm":
		if l, ok := variantLevel("arm", h.Variant); ok {
			return 10 + l // below every arm64 rank (900 and up)
		}
	}
	return 0
}

// variantRank ranks have's variant for want's, 0 when incompatible.
func variantRank(w, h v1.Platform) int {
	switch w.Architecture {
	case "amd64", "arm", "arm64":
		wl, wok := variantLevel(w.Architecture, w.Variant)
		hl, hok := variantLevel(h.Architecture, h.Variant)
		if !wok || !hok {
			if w.Variant == h.Variant {
				return 1
			}
			return 0
		}
		if hl > wl {
			return 0 // a higher level than asked may not run
		}
		return 1000 - (wl - hl) // the closer, the better
	}
	switch {
	case w.Variant == h.Variant:
		return 2
	case w.Variant == "":
		return 1
	}
	return 0
}

// variantLevel orders an architecture's variants: amd64 v1..v4 (empty is
// v1), arm v5..v8 (empty is v7), arm64 v8.0..v8.9 and v9.x (empty is v8).
func variantLevel(arch, variant string) (int, bool) {
	v := strings.TrimPrefix(variant, "v")
	switch arch {
	case "amd64":
		switch v {
		case "", "1":
			return 1, true
		case "2", "3", "4":
			return int(v[0] - '0'), true
		}
	case "arm":
		switch v {
		case "":
			return 7, true
		case "5", "6", "7", "8":
			return int(v[0] - '0'), true
		}
	case "arm64":
		if v == "" {
			return 80, true
		}
		major, minor, _ := strings.Cut(v, ".")
		if len(major) == 1 && major[0] >= '8' && major[0] <= '9' && (minor == "" || len(minor) == 1 && minor[0] >= '0' && minor[0] <= '9') {
			n := int(major[0]-'0') * 10
			if minor != "" {
				n += int(minor[0] - '0')
			}
			return n, true
		}
	}
	return 0, false
}

// sameWindowsBuild reports whether have's os.version has want's major,
// minor and build (10.0.17763), and returns have's revision.
func sameWindowsBuild(want, have string) (int, bool) {
	wp, hp := strings.Split(want, "."), strings.Split(have, ".")
	if len(wp) < 3 || len(hp) < 3 || wp[0] != hp[0] || wp[1] != hp[1] || wp[2] != hp[2] {
		return 0, false
	}
	rev := 0
	if len(hp) > 3 {
		for _, c := range hp[3] {
			if c < '0' || c > '9' || rev > 99_999_999 {
				return 0, true
			}
			rev = rev*10 + int(c-'0')
		}
	}
	return rev, true
}

// SelectPlatform returns the child of the index that best serves want
// ([PlatformRank]): an exact match first, then the most compatible
// variant, never one that cannot run there; among equals, the index's
// order decides. When none fits, the error wraps [ErrNoMatchingPlatform]
// and lists the platforms the index offers.
func (x *Index) SelectPlatform(want v1.Platform) (v1.Descriptor, error) {
	var offered []string
	best, bestRank := v1.Descriptor{}, 0
	for _, d := range x.index.Manifests {
		if d.Platform == nil {
			continue
		}
		if r := PlatformRank(want, *d.Platform); r > bestRank {
			best, bestRank = d, r
		}
		if d.Platform.OS != "unknown" {
			offered = append(offered, PlatformString(*d.Platform))
		}
	}
	if bestRank > 0 {
		return best, nil
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
