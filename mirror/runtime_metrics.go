package mirror

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// writeRuntimeMetrics appends the Go runtime's and the process's metrics;
// the gauges carry the names Prometheus' own Go client gives them, so that
// dashboards built for those work unchanged. process_open_fds is left out
// where /proc is not.
func writeRuntimeMetrics(b *strings.Builder, started time.Time) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gauge := func(name, help string, v any) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %v\n", name, help, name, name, v)
	}
	gauge("go_goroutines", "Goroutines that currently exist.", runtime.NumGoroutine())
	gauge("go_memstats_heap_alloc_bytes", "Heap bytes allocated and still in use.", ms.HeapAlloc)
	gauge("go_memstats_sys_bytes", "Bytes obtained from the system.", ms.Sys)
	fmt.Fprintf(b, "# HELP go_gc_cycles_total Completed garbage collection cycles.\n# TYPE go_gc_cycles_total counter\ngo_gc_cycles_total %d\n", ms.NumGC)
	gauge("process_start_time_seconds", "When the cache was made, in seconds since the Unix epoch.", started.Unix())
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		gauge("process_open_fds", "Open file descriptors.", len(fds))
	}
}
