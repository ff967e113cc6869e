package mirror

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds, in seconds, of the latency
// histograms' buckets: from a store hit to a large blob.
var latencyBounds = [...]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// histogram counts durations into latencyBounds (a fixed, small memory;
// safe for concurrent use).
type histogram struct {
	buckets [len(latencyBounds) + 1]atomic.Int64 // the last is +Inf
	sum     atomic.Int64                         // nanoseconds
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(latencyBounds) && s > latencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(int64(d))
}

// write appends the histogram's series (cumulative buckets, sum, count)
// under name, with labels (`key="value"` pairs, comma-separated; "" for
// none), in the Prometheus text format.
func (h *histogram) write(b *strings.Builder, name, labels string) {
	sep := ""
	if labels != "" {
		sep = ","
	}
	var n int64
	for i := range h.buckets {
		n += h.buckets[i].Load()
		le := "+Inf"
		if i < len(latencyBounds) {
			le = strconv.FormatFloat(latencyBounds[i], 'g', -1, 64)
		}
		fmt.Fprintf(b, "%s_bucket{%s%sle=%q} %d\n", name, labels, sep, le, n)
	}
	braces := ""
	if labels != "" {
		braces = "{" + labels + "}"
	}
	fmt.Fprintf(b, "%s_sum%s %s\n", name, braces, strconv.FormatFloat(time.Duration(h.sum.Load()).Seconds(), 'g', -1, 64))
	fmt.Fprintf(b, "%s_count%s %d\n", name, braces, n)
}
