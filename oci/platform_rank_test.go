package oci

import (
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func plat(s string) v1.Platform {
	p, err := ParsePlatform(s)
	if err != nil {
		panic(err)
	}
	return p
}

// TestSelectPlatformCompatible: indexes ordered to catch a first-match
// matcher; the most compatible child wins, never one that cannot run.
func TestSelectPlatformCompatible(t *testing.T) {
	win := func(version string) v1.Platform {
		return v1.Platform{OS: "windows", Architecture: "amd64", OSVersion: version}
	}
	for _, tc := range []struct {
		name     string
		want     v1.Platform
		children []v1.Platform
		pick     int // index of the child chosen, -1 for none
	}{
		{"amd64 baseline never gets v3", plat("linux/amd64"), []v1.Platform{plat("linux/amd64/v3"), plat("linux/amd64")}, 1},
		{"amd64 baseline with only v3", plat("linux/amd64"), []v1.Platform{plat("linux/amd64/v3")}, -1},
		{"amd64 v3 takes the highest level below", plat("linux/amd64/v3"), []v1.Platform{plat("linux/amd64"), plat("linux/amd64/v2"), plat("linux/amd64/v4")}, 1},
		{"amd64 v3 exact wins", plat("linux/amd64/v3"), []v1.Platform{plat("linux/amd64/v2"), plat("linux/amd64/v3")}, 1},
		{"arm v7 takes v6", plat("linux/arm/v7"), []v1.Platform{plat("linux/arm/v5"), plat("linux/arm/v6")}, 1},
		{"arm v6 never gets v7", plat("linux/arm/v6"), []v1.Platform{plat("linux/arm/v7")}, -1},
		{"arm64 v8.2 takes v8.1", plat("linux/arm64/v8.2"), []v1.Platform{plat("linux/arm64/v8.4"), plat("linux/arm64"), plat("linux/arm64/v8.1")}, 2},
		{"arm64 default is v8", plat("linux/arm64"), []v1.Platform{plat("linux/arm64/v8.1"), plat("linux/arm64/v8")}, 1},
		{"windows: the same build, the highest revision", win("10.0.17763.100"),
			[]v1.Platform{win("10.0.17763.50"), win("10.0.20348.10"), win("10.0.17763.200")}, 2},
		{"windows: another build does not run", win("10.0.17763.1"), []v1.Platform{win("10.0.20348.10")}, -1},
		{"other OS", plat("linux/amd64"), []v1.Platform{plat("windows/amd64")}, -1},
		{"386 on amd64, after amd64", plat("linux/amd64"), []v1.Platform{plat("linux/386"), plat("linux/amd64")}, 1},
		{"386 on amd64 alone", plat("linux/amd64"), []v1.Platform{plat("linux/386")}, 0},
		{"arm/v7 on arm64, after arm64", plat("linux/arm64"), []v1.Platform{plat("linux/arm/v7"), plat("linux/arm64")}, 1},
		{"arm/v7 over arm/v6 on arm64", plat("linux/arm64"), []v1.Platform{plat("linux/arm/v6"), plat("linux/arm/v7")}, 1},
		{"amd64 never on arm64", plat("linux/arm64"), []v1.Platform{plat("linux/amd64")}, -1},
		{"s390x any variant when none asked", plat("linux/s390x"), []v1.Platform{{OS: "linux", Architecture: "s390x", Variant: "z15"}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ms []v1.Descriptor
			for i, p := range tc.children {
				p := p
				ms = append(ms, v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digestN(i), Size: 2, Platform: &p})
			}
			x := &Index{index: v1.Index{Manifests: ms}}
			d, err := x.SelectPlatform(tc.want)
			switch {
			case tc.pick < 0 && err == nil:
				t.Errorf("picked %s, want none", PlatformString(*d.Platform))
			case tc.pick >= 0 && err != nil:
				t.Errorf("none picked: %v", err)
			case tc.pick >= 0 && d.Digest != digestN(tc.pick):
				t.Errorf("picked %s, want %s", PlatformString(*d.Platform), PlatformString(tc.children[tc.pick]))
			}
		})
	}
}

// TestHostVariantFromCPUInfo: the amd64 level and the arm variant come
// from /proc/cpuinfo as containerd reads them.
func TestHostVariantFromCPUInfo(t *testing.T) {
	v2 := "cx16 lahf_lm popcnt sse4_1 sse4_2 ssse3"
	v3 := v2 + " avx avx2 bmi1 bmi2 f16c fma abm movbe xsave"
	for _, tc := range []struct{ arch, info, want string }{
		{"amd64", "flags\t: fpu sse2", ""},
		{"amd64", "flags\t: " + v2, "v2"},
		{"amd64", "flags\t: " + v3, "v3"},
		{"amd64", "flags\t: " + v3 + " avx512f avx512bw avx512cd avx512dq avx512vl", "v4"},
		{"arm", "CPU architecture: 7", "v7"},
		{"arm", "CPU architecture: 6TEJ", "v6"},
	} {
		if got := variantFromCPUInfo(tc.arch, tc.info); got != tc.want {
			t.Errorf("%s %q: %q, want %q", tc.arch, tc.info, got, tc.want)
		}
	}
}

// digestN is a distinct valid digest per n.
func digestN(n int) digest.Digest { return digest.FromString(fmt.Sprint("child-", n)) }
