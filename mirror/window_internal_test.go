package mirror

import (
	"bytes"
	"testing"
)

// TestWindowRing: a window holds exactly the newest len(buf) bytes of
// what was added in order, across the ring's wrap; bytes that do not
// continue what it holds restart it; an addition larger than the ring
// keeps its end.
func TestWindowRing(t *testing.T) {
	blob := make([]byte, 100)
	for i := range blob {
		blob[i] = byte(i)
	}
	w := &window{buf: make([]byte, 16)}
	check := func(lo, hi int64) {
		t.Helper()
		for off := int64(0); off <= int64(len(blob)); off++ {
			dst := make([]byte, 7)
			n := w.copyAt(dst, off)
			wantN := 0
			if off >= lo && off < hi {
				wantN = int(min(7, hi-off))
			}
			if n != wantN || !bytes.Equal(dst[:n], blob[off:off+int64(n)]) {
				t.Fatalf("holding [%d,%d): copyAt(%d) = %d bytes %v, want %d", lo, hi, off, n, dst[:n], wantN)
			}
		}
	}
	check(0, 0)
	w.add(blob[0:5], 5)
	check(0, 5)
	w.add(blob[5:12], 12)
	check(0, 12)
	w.add(blob[12:30], 30) // wraps
	check(14, 30)
	w.add(blob[30:31], 31)
	check(15, 31)
	w.add(blob[40:45], 45) // a gap: restart
	check(40, 45)
	w.add(blob[45:90], 90) // larger than the ring
	check(74, 90)
}

// TestWindowsBounded: the pool hands out at most maxWindows windows of
// windowSize bytes; a flight finding none free gets nil, and a window
// given back is handed out again.
func TestWindowsBounded(t *testing.T) {
	var ws windows
	ws.init()
	var taken []*window
	for range maxWindows {
		w := ws.take()
		if w == nil || len(w.buf) != windowSize {
			t.Fatalf("window %d: %v", len(taken), w)
		}
		taken = append(taken, w)
	}
	if w := ws.take(); w != nil {
		t.Fatalf("window %d handed out beyond the bound of %d", maxWindows+1, maxWindows)
	}
	ws.give(taken[0])
	if w := ws.take(); w != taken[0] {
		t.Fatal("a window given back was not handed out again")
	}
}
