package oci

import "strings"

// variantFromCPUInfo reads a variant from /proc/cpuinfo's text (Linux
// has the file; the parser is plain text handling, tested everywhere).
func variantFromCPUInfo(arch, cpuinfo string) string {
	switch arch {
	case "amd64":
		flags := map[string]bool{}
		for _, line := range strings.Split(cpuinfo, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
				for _, f := range strings.Fields(v) {
					flags[f] = true
				}
				break
			}
		}
		has := func(fs ...string) bool {
			for _, f := range fs {
				if !flags[f] {
					return false
				}
			}
			return true
		}
		// x86-64 micro-architecture levels (the psABI's table).
		v2 := has("cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3")
		v3 := v2 && has("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave")
		v4 := v3 && has("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
		switch {
		case v4:
			return "v4"
		case v3:
			return "v3"
		case v2:
			return "v2"
		}
	case "arm":
		for _, line := range strings.Split(cpuinfo, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "CPU architecture" {
				switch strings.TrimSpace(v) {
				case "5", "5TE", "5TEJ":
					return "v5"
				case "6", "6TEJ":
					return "v6"
				case "7":
					return "v7"
				case "8", "AArch64":
					return "v8"
				}
			}
		}
	}
	return ""
}
