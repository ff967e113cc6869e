package mirror

// A flight's window keeps the newest bytes of its landing in memory, as
// the store reports them (oci.BlobProgress.Landed), so that the followers
// at the landing's edge (usually all of them: the request that started the
// fetch follows it too) send those bytes from memory. Reading them back
// from the landing file would cost more: the store's landing of a large
// blob bypasses the page cache (direct I/O), so the file's bytes come back
// from the disk, into memory no CPU cache has seen (BENCHMARKS.md: a cold
// miss's client spent 3x the CPU reading them). A follower that falls
// behind the window reads the file as before.
const (
	// windowSize is how many of a landing's newest bytes a window holds:
	// the pipelined landing reports up to 16 MiB at once when its writes
	// fall behind.
	windowSize = 16 << 20
	// maxWindows bounds the memory windows take, cache-wide, to
	// maxWindows * windowSize (64 MiB); a flight finding none free serves
	// its followers from the file.
	maxWindows = 4
	// windowMinSize is the smallest blob given a window: a smaller one
	// lands through the page cache and is read back from there.
	windowMinSize = 8 << 20
	// followBuffer is what a follower copies out of the window per write.
	followBuffer = 256 << 10
)

// window is a ring holding the bytes [end-n, end) of a blob's landing.
// The flight's mutex guards it.
type window struct {
	buf []byte
	end int64
	n   int
}

// add records p, the landing's bytes ending at end. Bytes that do not
// continue what the window holds (a resumed landing, a gap) restart it.
func (w *window) add(p []byte, end int64) {
	if end-int64(len(p)) != w.end {
		w.n = 0
	}
	w.n = min(w.n+len(p), len(w.buf))
	if len(p) > len(w.buf) {
		p = p[len(p)-len(w.buf):]
	}
	for start := end - int64(len(p)); len(p) > 0; {
		i := int(start % int64(len(w.buf)))
		k := copy(w.buf[i:], p)
		p, start = p[k:], start+int64(k)
	}
	w.end = end
}

// copyAt copies into dst the bytes the window holds from blob offset off
// onwards, reporting how many; 0 when off is not held.
func (w *window) copyAt(dst []byte, off int64) int {
	if off < w.end-int64(w.n) || off >= w.end {
		return 0
	}
	want := min(int64(len(dst)), w.end-off)
	done := 0
	for int64(done) < want {
		i := int((off + int64(done)) % int64(len(w.buf)))
		done += copy(dst[done:want], w.buf[i:])
	}
	return done
}

// windows is the cache's pool of windows, at most maxWindows.
type windows struct{ free chan *window }

func (ws *windows) init() {
	ws.free = make(chan *window, maxWindows)
	for i := 0; i < maxWindows; i++ {
		ws.free <- nil // allocated on first use
	}
}

// take returns a free window, or nil when every one is in use.
func (ws *windows) take() *window {
	select {
	case w := <-ws.free:
		if w == nil {
			w = &window{buf: make([]byte, windowSize)}
		}
		w.end, w.n = 0, 0
		return w
	default:
		return nil
	}
}

// give returns w to the pool.
func (ws *windows) give(w *window) {
	if w != nil {
		ws.free <- w
	}
}
