package wire

import (
	"errors"
	"strconv"
	"strings"
)

// ByteRange is a parsed Range request against a body of some size.
type ByteRange struct {
	First, Last int64
	Partial     bool // false: serve the whole body
}

// Len is the number of bytes the range covers.
func (r ByteRange) Len() int64 { return r.Last - r.First + 1 }

// ParseRange reads a single byte range (RFC 9110 section 14.1.2):
// "bytes=first-last", "bytes=first-" or "bytes=-suffix", against a body of
// size bytes. A header it does not serve (absent, several ranges, another
// unit, malformed) means the whole body; ok=false means unsatisfiable
// (416). A last position past the end, however large (even beyond int64),
// is clamped to the end, as the RFC says. An empty body is always served
// whole.
func ParseRange(h string, size int64) (r ByteRange, ok bool) {
	whole := ByteRange{0, size - 1, false}
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return whole, true
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return whole, true
	}
	if a == "" {
		n, err := parseDigitsClamped(b)
		if err != nil {
			return whole, true
		}
		if n == 0 || size == 0 {
			return ByteRange{}, false
		}
		n = min(n, size)
		return ByteRange{size - n, size - 1, true}, true
	}
	f, err := parseUint(a)
	if err != nil {
		return whole, true
	}
	l := size - 1
	if b != "" {
		x, err := parseDigitsClamped(b)
		if err != nil || x < f {
			return whole, true
		}
		l = min(x, size-1)
	}
	if f >= size {
		return ByteRange{}, false
	}
	return ByteRange{f, l, true}, true
}

// parseDigitsClamped reads 1*DIGIT, clamping values beyond int64 to
// math.MaxInt64 (a range end may be any number).
func parseDigitsClamped(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("not a number")
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errors.New("not a number")
		}
		if n > (1<<63-1-int64(c-'0'))/10 {
			n = 1<<63 - 1
			continue
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// parseUint reads 1*DIGIT as a non-negative int64, refusing values that
// do not fit.
func parseUint(s string) (int64, error) {
	if s == "" || len(s) > 18 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("not a number")
	}
	return strconv.ParseInt(s, 10, 64)
}

// EtagMatches reports whether an If-None-Match header names the entity
// tag of d (the digest, quoted), weakly compared, or is "*".
func EtagMatches(header string, d string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(t), "W/"))
		if t == "*" || t == `"`+d+`"` {
			return true
		}
	}
	return false
}
