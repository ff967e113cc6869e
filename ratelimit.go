package registry

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// RateLimit is a registry's pull allowance as its response headers state
// it: Docker Hub's RateLimit-Limit and RateLimit-Remaining ("100;w=21600":
// 100 pulls per 21600 s window), Docker-RateLimit-Source, and
// RateLimit-Reset or, on a 429, Retry-After. Fields a response does not
// state are zero; Limit and Remaining are -1 when absent.
type RateLimit struct {
	// Host is the endpoint (registry or mirror) that sent the headers.
	Host string
	// Limit is how many requests the window allows; -1 when not sent.
	Limit int64
	// Remaining is how many are left in the current window; -1 when not sent.
	Remaining int64
	// Window is the window's length, from ";w=", or zero.
	Window time.Duration
	// Source is Docker-RateLimit-Source: what the limit is counted
	// against (an IP address or an account id).
	Source string
	// Reset is when the allowance renews, from RateLimit-Reset (seconds
	// from now) or a 429's Retry-After; zero when not said.
	Reset time.Time
}

// String is the allowance as a person reads it: "76 of 100 pulls left
// per 6h0m0s window (source 192.0.2.1)".
func (r RateLimit) String() string {
	var b strings.Builder
	switch {
	case r.Remaining >= 0 && r.Limit >= 0:
		fmt.Fprintf(&b, "%d of %d pulls left", r.Remaining, r.Limit)
	case r.Remaining >= 0:
		fmt.Fprintf(&b, "%d pulls left", r.Remaining)
	case r.Limit >= 0:
		fmt.Fprintf(&b, "limit %d pulls", r.Limit)
	default:
		b.WriteString("rate limited")
	}
	if r.Window > 0 {
		fmt.Fprintf(&b, " per %s window", r.Window)
	}
	if !r.Reset.IsZero() {
		fmt.Fprintf(&b, ", resets at %s", r.Reset.UTC().Format(time.RFC3339))
	}
	if r.Source != "" {
		fmt.Fprintf(&b, " (source %s)", printable(r.Source, 64))
	}
	return b.String()
}

// parseRateLimit reads the rate-limit headers of a response, or reports
// false when it has none. now dates Reset.
func parseRateLimit(h http.Header, host string, status int, now time.Time) (RateLimit, bool) {
	limit, lw, okL := parseRateValue(h.Get("RateLimit-Limit"))
	remaining, rw, okR := parseRateValue(h.Get("RateLimit-Remaining"))
	source := strings.TrimSpace(h.Get("Docker-RateLimit-Source"))
	reset := time.Time{}
	if n, err := parseUint(strings.TrimSpace(h.Get("RateLimit-Reset"))); err == nil {
		reset = now.Add(time.Duration(min(n, 1<<31)) * time.Second)
	} else if status == http.StatusTooManyRequests {
		if d := parseRetryAfter(h.Get("Retry-After"), now); d > 0 {
			reset = now.Add(d)
		}
	}
	if !okL && !okR && source == "" && reset.IsZero() {
		return RateLimit{}, false
	}
	r := RateLimit{Host: host, Limit: -1, Remaining: -1, Source: printable(source, 64), Reset: reset}
	if okL {
		r.Limit, r.Window = limit, lw
	}
	if okR {
		r.Remaining = remaining
		if r.Window == 0 {
			r.Window = rw
		}
	}
	return r, true
}

// parseRateValue reads "N" or "N;w=SECONDS" (further parameters ignored).
func parseRateValue(v string) (n int64, window time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, 0, false
	}
	first, params, _ := strings.Cut(v, ";")
	// Some servers list several policies: "100, 100;w=21600"; the first counts.
	first, _, _ = strings.Cut(first, ",")
	n, err := parseUint(strings.TrimSpace(first))
	if err != nil {
		return 0, 0, false
	}
	for _, p := range strings.Split(params, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "w") {
			if s, err := parseUint(strings.TrimSpace(val)); err == nil {
				window = time.Duration(min(s, 1<<31)) * time.Second
			}
		}
	}
	return n, window, true
}

// rateState is the last rate limit a Client's transports saw.
type rateState struct{ last atomic.Pointer[RateLimit] }

// observe records the rate-limit headers of resp, if it has any.
func (s *rateState) observe(resp *http.Response, host string) {
	if s == nil {
		return
	}
	if r, ok := parseRateLimit(resp.Header, host, resp.StatusCode, time.Now()); ok {
		s.last.Store(&r)
	}
}

// RateLimit returns the last pull allowance a registry or mirror stated
// in a response to this client (see [RateLimit]), and false when none has.
// Docker Hub states it on manifest requests, GET and HEAD alike.
func (r *Registry) RateLimit() (RateLimit, bool) {
	r.init()
	if last := r.rate.last.Load(); last != nil {
		return *last, true
	}
	return RateLimit{}, false
}
