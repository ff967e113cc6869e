package oci

import (
	"os"
	"runtime"
	"sync"
)

// hostVariant is this machine's variant, read once from /proc/cpuinfo:
// the amd64 level (v2, v3, v4 by the CPU flags each level requires; ""
// for the baseline) or the arm variant ("v6", "v7", "v8"); "" when it
// cannot be told.
var hostVariant = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	return variantFromCPUInfo(runtime.GOARCH, string(b))
})
