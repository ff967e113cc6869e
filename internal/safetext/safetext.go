// Package safetext makes untrusted strings safe to print: registry
// answers, file names and media types that reach an error message, a log
// line or a terminal. It is the one sanitiser of the module.
package safetext

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// String returns s with every character that could move the cursor,
// change colours, forge a line or reorder text replaced by '?': C0 and C1
// control characters (ESC, CR, LF, BEL, the 8-bit CSI), DEL, invalid
// UTF-8, and Unicode's bidirectional and other invisible format controls.
// It is cut to at most max bytes (on a character boundary, marked "..."),
// unless max is negative.
func String(s string, max int) string {
	cut := false
	if max >= 0 && len(s) > max {
		for max > 0 && !utf8.RuneStart(s[max]) {
			max--
		}
		s, cut = s[:max], true
	}
	if clean(s) {
		if cut {
			return s + "..."
		}
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if unsafeRune(r, n) {
			b.WriteByte('?')
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	if cut {
		b.WriteString("...")
	}
	return b.String()
}

// clean reports printable ASCII, the common case, without allocating.
func clean(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func unsafeRune(r rune, size int) bool {
	switch {
	case r == utf8.RuneError && size <= 1:
		return true
	case r < 0x20 || r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x2028 || r == 0x2029: // line and paragraph separators
		return true
	}
	// Format characters: bidi controls, zero-width and invisible marks
	// (U+061C, U+200B-U+200F, U+202A-U+202E, U+2060-U+206F, U+FEFF, and
	// the rest of the category, such as U+070F or U+110BD).
	return r >= 0xad && unicode.Is(unicode.Cf, r)
}
