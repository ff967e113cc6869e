package safetext

import "testing"

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain/media+type", "plain/media+type"},
		{"a\x1b[31mred\x1b[0m", "a?[31mred?[0m"},
		{"line\nforged", "line?forged"},
		{"c1\u009b31m", "c1?31m"},
		{"bidi\u202eevil", "bidi?evil"},
		{"format\u070fmark\U000110bd", "format?mark?"},
		{"soft\u00adhyphen\u2029para", "soft?hyphen?para"},
		{"bad\xffutf8", "bad?utf8"},
		{"tab\there", "tab?here"},
		{"ünïcode ok", "ünïcode ok"},
	} {
		if got := String(tc.in, -1); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := String("ééé", 3); got != "é..." {
		t.Errorf("cut: got %q", got)
	}
}

func FuzzString(f *testing.F) {
	for _, s := range []string{"\x1b]0;title\x07", "a\u202eb", "\xc0\x80", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s, 64)
		for _, r := range out {
			if unsafeRune(r, 2) && r != 0xfffd {
				t.Fatalf("unsafe rune %U in %q", r, out)
			}
		}
		if len(out) > 64+3 {
			t.Fatalf("too long: %d", len(out))
		}
	})
}
