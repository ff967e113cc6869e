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
	resumed        int64 // the prefix an earlier run left, not transferred now
	done, skipped  bool
	waiting        bool // another process holds the blob
	started        time.Time
}

// isTerminal reports whether w is a terminal (not merely a character
// device: /dev/null is one too, and "> /dev/null" must behave as a pipe).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && os.Getenv("TERM") != "dumb" && isTerminalFile(f)
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
	if bp.Resumed {
		b.resumed = bp.Complete
	}
	b.waiting = bp.Waiting
	if !bp.Waiting {
		b.complete = bp.Complete
	}
	if bp.Waiting && !p.live && !p.quiet {
		fmt.Fprintf(p.out, "%s waiting: another process is downloading it\n", short(bp.Descriptor.Digest))
	}
	if bp.Done && !b.done {
		b.done, b.skipped = true, bp.Skipped
		if !p.live && !p.quiet {
			what := "downloaded"
			switch {
			case bp.Skipped:
				what = "already present"
			case b.resumed > 0:
				what = fmt.Sprintf("downloaded (resumed after %s)", humanBytes(b.resumed))
			}
			fmt.Fprintf(p.out, "%s %s %s\n", short(bp.Descriptor.Digest), humanBytes(b.size), what)
		}
	}
}

// note writes a line above the live block (a retry, a request log line)
// when both go to the same terminal, and redraws the block below it.
func (p *progress) note(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	if p.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.lines)
	}
	b.WriteString("\x1b[J")
	b.WriteString(strings.TrimRight(line, "\n"))
	b.WriteString("\n")
	io.WriteString(p.out, b.String())
	p.lines = 0
	p.redraw()
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
	var total, complete, resumed, present int64
	done := 0
	for _, d := range keys {
		s := p.blobs[d]
		total += s.size
		complete += s.complete
		resumed += s.resumed
		if s.skipped {
			present += s.size
		}
		if s.done {
			done++
			continue
		}
		switch {
		case s.waiting:
			fmt.Fprintf(&b, "\x1b[2K%s waiting: another process is downloading it\n", short(d))
		default:
			pct := 0.0
			if s.size > 0 {
				pct = 100 * float64(s.complete) / float64(s.size)
			}
			fmt.Fprintf(&b, "\x1b[2K%s %5.1f%% %s / %s", short(d), pct, humanBytes(s.complete), humanBytes(s.size))
			if s.resumed > 0 {
				fmt.Fprintf(&b, " (%s resumed)", humanBytes(s.resumed))
			}
			b.WriteString("\n")
		}
		lines++
	}
	// The speed counts only what crossed the network in this run: not a
	// resumed prefix, not blobs already present.
	moved := complete - resumed - present
	rate := float64(moved) / max(time.Since(p.start).Seconds(), 0.001)
	if time.Since(p.start) < 2*time.Second {
		rate = 0 // too early to say: no speed, no time left (it read "9h12m left")
	}
	b.WriteString("\x1b[2K")
	b.WriteString(totalLine(done, len(keys), complete, total, resumed, rate))
	b.WriteString("\n")
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

// totalLine is the live block's last line.
func totalLine(done, blobs int, complete, total, resumed int64, rate float64) string {
	eta := "-"
	if rate > 0 && total > complete {
		eta = time.Duration(float64(total-complete) / rate * float64(time.Second)).Round(time.Second).String()
	}
	s := fmt.Sprintf("total %d/%d blobs, %s / %s", done, blobs, humanBytes(complete), humanBytes(total))
	if resumed > 0 {
		s += fmt.Sprintf(" (%s resumed)", humanBytes(resumed))
	}
	return s + fmt.Sprintf(", %s/s, %s left", humanBytes(int64(rate)), eta)
}

func (p *progress) summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var total, resumed int64
	skipped := 0
	for _, s := range p.blobs {
		total += s.size
		resumed += s.resumed
		if s.skipped {
			skipped++
		}
	}
	el := time.Since(p.start)
	s := fmt.Sprintf("%s (%d already present), %s", plural(len(p.blobs), "blob", "blobs"), skipped, humanBytes(total))
	if resumed > 0 {
		s += fmt.Sprintf(" (%s of it resumed from an earlier run)", humanBytes(resumed))
	}
	return s + " in " + el.Round(time.Millisecond).String()
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
