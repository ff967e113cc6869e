package registry

import (
	"net/http"
	"testing"
	"time"
	"unicode"
)

// FuzzResponseHeaders feeds registry-controlled header values to every
// parser that reads them without its own fuzz target (Content-Range,
// Retry-After, the rate-limit headers); the served Range and If-None-Match
// readers have theirs in internal/wire. None may panic, and what each accepts must be
// within the bounds its caller relies on.
func FuzzResponseHeaders(f *testing.F) {
	for _, s := range [][2]string{
		{"bytes 0-99/100", "100;w=21600"},
		{"bytes 5-9/*", "76;w=21600, 100;w=3600"},
		{"bytes 9-5/10", "Thu, 01 Jan 2026 00:00:30 GMT"},
		{"bytes=0-", "bytes=-5"},
		{"bytes=99999999999999999999999-", `W/"sha256:x", *`},
		{"bytes 0-9223372036854775807/9223372036854775807", "99999999999999999999"},
		{"", "\x1b[2J;w=5"},
	} {
		f.Add(s[0], s[1], int64(100))
	}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, a, b string, size int64) {
		if size < 0 {
			size = -(size + 1)
		}
		for _, v := range []string{a, b} {
			if first, last, total, err := parseContentRange(v); err == nil {
				if first < 0 || last < first || total != -1 && total <= last {
					t.Fatalf("Content-Range %q accepted as %d-%d/%d", v, first, last, total)
				}
			}
			if d := parseRetryAfter(v, now); d < 0 {
				t.Fatalf("Retry-After %q read as %v", v, d)
			}
		}
		h := http.Header{"Ratelimit-Limit": {a}, "Ratelimit-Remaining": {b}, "Docker-Ratelimit-Source": {a + b},
			"Ratelimit-Reset": {b}, "Retry-After": {a}}
		rl, ok := parseRateLimit(h, "registry.example", http.StatusTooManyRequests, now)
		if !ok {
			return
		}
		if rl.Window < 0 || !rl.Reset.IsZero() && rl.Reset.Before(now) || rl.Limit < -1 || rl.Remaining < -1 {
			t.Fatalf("rate limit %+v from %q, %q", rl, a, b)
		}
		for _, r := range rl.String() {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				t.Fatalf("rate limit text carries %U: %q", r, rl.String())
			}
		}
	})
}
