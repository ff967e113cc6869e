package faults

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PullLimit emulates Docker Hub's pull rate limit in front of Next: Limit
// manifest GETs per Window are answered; after that, manifest GETs get
// 429 TOOMANYREQUESTS with Retry-After (the seconds left in the window)
// until the window ends. HEAD requests of manifests are free and never
// refused. Every manifest response carries RateLimit-Limit and
// RateLimit-Remaining ("N;w=SECONDS") and, when Source is set,
// Docker-RateLimit-Source. Blobs and every other path pass through
// uncounted, as on Docker Hub. The window starts at the first request.
// It is safe for concurrent use.
type PullLimit struct {
	Next   http.Handler
	Limit  int
	Window time.Duration
	Source string

	mu    sync.Mutex
	start time.Time
	used  int
}

// ServeHTTP applies the limit.
func (p *PullLimit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.URL.Path, "/manifests/") {
		p.Next.ServeHTTP(w, r)
		return
	}
	now := time.Now()
	p.mu.Lock()
	if p.start.IsZero() || now.Sub(p.start) >= p.Window {
		p.start, p.used = now, 0
	}
	refused := false
	if r.Method == http.MethodGet {
		if p.used >= p.Limit {
			refused = true
		} else {
			p.used++
		}
	}
	remaining := p.Limit - p.used
	left := p.Window - now.Sub(p.start)
	p.mu.Unlock()
	window := int64(p.Window / time.Second)
	h := w.Header()
	h.Set("RateLimit-Limit", fmt.Sprintf("%d;w=%d", p.Limit, window))
	h.Set("RateLimit-Remaining", fmt.Sprintf("%d;w=%d", remaining, window))
	if p.Source != "" {
		h.Set("Docker-RateLimit-Source", p.Source)
	}
	if refused {
		secs := int64((left + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintf(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}`)
		return
	}
	p.Next.ServeHTTP(w, r)
}
