package registry

import (
	"sync"
	"time"
)

// stallWatch checks the progress of one transport's requests with one
// timer. A timer per request would be simpler, but arming a timer can wake
// an idle thread of the Go scheduler (to watch the new deadline): on
// loopback, a pull of 100 small blobs spent 4-5 µs and a context switch
// per request on it (BENCHMARKS.md). Here a request's progress is a
// timestamp it stores; the shared timer is armed at the earliest deadline
// of the requests in flight, and a new request (whose deadline is later
// than those already watched) leaves it alone. When it fires, requests
// without progress for the stall window are cancelled and it is armed
// again for the next deadline, or left unarmed when none is in flight
// (no goroutine waits for it). An armed timer keeps its transport
// reachable until it fires, at most one stall window after the last
// request: a program that makes a Registry per pull and drops it holds
// each for up to that long.
type stallWatch struct {
	d      time.Duration
	mu     sync.Mutex
	active map[*watchdog]struct{} // the requests in flight
	timer  *time.Timer            // runs check
	armed  int64                  // UnixNano the timer fires at; 0: not armed
}

// add watches wd from its last progress on.
func (s *stallWatch) add(wd *watchdog) {
	s.mu.Lock()
	if s.active == nil {
		s.active = map[*watchdog]struct{}{}
	}
	s.active[wd] = struct{}{}
	if due := wd.last.Load() + int64(s.d); s.armed == 0 || due < s.armed {
		s.arm(due)
	}
	s.mu.Unlock()
}

// remove stops watching wd. The timer stays armed: a request that follows
// soon uses it as it is.
func (s *stallWatch) remove(wd *watchdog) {
	s.mu.Lock()
	delete(s.active, wd)
	s.mu.Unlock()
}

// arm sets the timer to fire at the UnixNano at. Called under mu.
func (s *stallWatch) arm(at int64) {
	wait := time.Duration(at - time.Now().UnixNano())
	if s.timer == nil {
		s.timer = time.AfterFunc(wait, s.check)
	} else {
		s.timer.Reset(wait)
	}
	s.armed = at
}

// check cancels the requests whose last progress is a stall window old
// and arms the timer for the earliest deadline of the others.
func (s *stallWatch) check() {
	now := time.Now().UnixNano()
	var expired []*watchdog
	s.mu.Lock()
	s.armed = 0
	var next int64
	for wd := range s.active {
		due := wd.last.Load() + int64(s.d)
		switch {
		case due <= now:
			delete(s.active, wd)
			expired = append(expired, wd)
		case next == 0 || due < next:
			next = due
		}
	}
	if next != 0 {
		s.arm(next)
	}
	s.mu.Unlock()
	for _, wd := range expired {
		wd.fire()
	}
}
