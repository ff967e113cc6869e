package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry/oci"
)

// progress reports blob downloads: live, redrawn lines on a terminal; one
// line per finished blob otherwise; nothing with quiet.
type progress struct {
	out   io.Writer
	quiet bool
	live  bool
	start time.Time

	mu       sync.Mutex
	blobs    map[digest.Digest]*blobState
	lines    int
	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

type blobState struct {
	size, complete int64
	done, skipped  bool
	started        time.Time
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

func newProgress(out io.Writer, quiet bool) *progress {
	p := &progress{out: out, quiet: quiet, live: !quiet && isTerminal(out), start: time.Now(),
		blobs: map[digest.Digest]*blobState{}, done: make(chan struct{})}
	if p.live {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-p.done:
					return
				case <-t.C:
					p.mu.Lock()
					p.redraw()
					p.mu.Unlock()
				}
			}
		}()
	}
	return p
}

func (p *progress) update(bp oci.BlobProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.blobs[bp.Descriptor.Digest]
	if b == nil {
		b = &blobState{size: bp.Descriptor.Size, started: time.Now()}
		p.blobs[bp.Descriptor.Digest] = b
	}
	b.complete = bp.Complete
	if bp.Done && !b.done {
		b.done, b.skipped = true, bp.Skipped
		if !p.live && !p.quiet {
			what := "downloaded"
			if bp.Skipped {
				what = "already present"
			}
			fmt.Fprintf(p.out, "%s %s %s\n", short(bp.Descriptor.Digest), humanBytes(b.size), what)
		}
	}
}

func (p *progress) stop() {
	p.stopOnce.Do(func() {
		close(p.done)
		p.wg.Wait()
		if p.live {
			p.mu.Lock()
			p.redraw()
			p.mu.Unlock()
		}
	})
}

func short(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return e
}

// redraw rewrites the live block: one line per unfinished blob and a total.
func (p *progress) redraw() {
	var b strings.Builder
	if p.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.lines)
	}
	keys := make([]digest.Digest, 0, len(p.blobs))
	for d := range p.blobs {
		keys = append(keys, d)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	lines := 0
	var total, complete int64
	done := 0
	for _, d := range keys {
		s := p.blobs[d]
		total += s.size
		complete += s.complete
		if s.done {
			done++
			continue
		}
		pct := 0.0
		if s.size > 0 {
			pct = 100 * float64(s.complete) / float64(s.size)
		}
		fmt.Fprintf(&b, "\x1b[2K%s %5.1f%% %s / %s\n", short(d), pct, humanBytes(s.complete), humanBytes(s.size))
		lines++
	}
	el := time.Since(p.start).Seconds()
	rate := float64(complete) / max(el, 0.001)
	eta := "-"
	if rate > 0 && total > complete {
		eta = (time.Duration(float64(total-complete)/rate) * time.Second / time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(&b, "\x1b[2Ktotal %d/%d blobs, %s / %s, %s/s, %s left\n", done, len(keys), humanBytes(complete), humanBytes(total), humanBytes(int64(rate)), eta)
	lines++
	// Clear lines left over from a taller previous frame.
	for i := lines; i < p.lines; i++ {
		b.WriteString("\x1b[2K\n")
	}
	if p.lines > lines {
		lines = p.lines
	}
	p.lines = lines
	io.WriteString(p.out, b.String())
}

func (p *progress) summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var total int64
	skipped := 0
	for _, s := range p.blobs {
		total += s.size
		if s.skipped {
			skipped++
		}
	}
	el := time.Since(p.start)
	return fmt.Sprintf("%d blobs (%d already present), %s in %s", len(p.blobs), skipped, humanBytes(total), el.Round(time.Millisecond))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
