package toml

import (
	"reflect"
	"strings"
	"testing"
)

// seeds are documents FuzzParse starts from: containerd's hosts.toml
// example, the mirror configuration's shapes, and the syntax's corners,
// valid and not.
var seeds = []string{
	`server = "https://registry-1.docker.io"

[host."https://mirror.example.com"]
  capabilities = ["pull", "resolve"]
  ca = "/etc/certs/mirror.pem"
  skip_verify = false
  [host."https://mirror.example.com".header]
    x-custom-2 = ["value1", "value2"]
`,
	"[upstream.\"docker.io\"]\nurl = \"https://registry-1.docker.io\"\nimmutable_tags = [\"v*\"]\n",
	"server = 'https://literal.example'\r\nskip_verify = true # lab\r\n",
	`header = { a = "b", "c d" = ["e"] }`,
	`[host."x"]` + "\n" + `capabilities = [` + "\n" + `"pull", # comment` + "\n" + `]`,
	`a = "\u00e9\t\"q\""`,
	`a = 1_000`,
	`a = [[["deep"]]]`,
	`[[arr]]`,
	`a = """multi"""`,
	`a = 1.5`,
	`a = "unterminated`,
	`a = 1` + "\n" + `a = 2`,
	`[t]` + "\n" + `[t]`,
	`a = "x" b = "y"`,
	strings.Repeat("[", 100),
	"a = \"\x00\"",
}

// tableAt walks keys down from t.
func tableAt(t *testing.T, root *Table, keys ...string) *Table {
	t.Helper()
	for _, k := range keys {
		v, _ := root.Get(k)
		sub, ok := v.(*Table)
		if !ok {
			t.Fatalf("%s is %#v, not a table", k, v)
		}
		root = sub
	}
	return root
}

func get(t *Table, k string) any { v, _ := t.Get(k); return v }

func TestParse(t *testing.T) {
	root, err := Parse(seeds[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := get(root, "server"); got != "https://registry-1.docker.io" {
		t.Errorf("server = %v", got)
	}
	host := tableAt(t, root, "host", "https://mirror.example.com")
	if got := get(host, "capabilities"); !reflect.DeepEqual(got, []any{"pull", "resolve"}) {
		t.Errorf("capabilities = %#v", got)
	}
	if get(host, "skip_verify") != false {
		t.Errorf("skip_verify = %#v", get(host, "skip_verify"))
	}
	hdr := tableAt(t, host, "header")
	if !reflect.DeepEqual(get(hdr, "x-custom-2"), []any{"value1", "value2"}) {
		t.Errorf("header = %#v", hdr.vals)
	}
	for src, want := range map[string]any{
		seeds[5]:        "é\t\"q\"",
		seeds[6]:        int64(1000),
		seeds[7]:        []any{[]any{[]any{"deep"}}},
		`a = 'C:\path'`: `C:\path`,
		`"a" = -7`:      int64(-7),
	} {
		root, err := Parse(src)
		if err != nil {
			t.Errorf("%q: %v", src, err)
			continue
		}
		if !reflect.DeepEqual(get(root, "a"), want) {
			t.Errorf("%q: a = %#v, want %#v", src, get(root, "a"), want)
		}
	}
	for _, bad := range seeds[8:] {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q parsed, want an error", bad)
		}
	}
	if _, err := Parse("a = 1\nb = 2.5\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error %v does not name line 2", err)
	}
}

// TestLines: every key, in a header, dotted or in an inline table,
// records the line where it was defined.
func TestLines(t *testing.T) {
	root, err := Parse("# top\nlisten = \":5000\"\n\n[upstream.\"docker.io\"]\nurl = \"u\"\ntags = [\n  \"a\",\n]\nttl = \"5m\"\n[tls]\nx = { y = 1 }\n")
	if err != nil {
		t.Fatal(err)
	}
	up := tableAt(t, root, "upstream")
	dh := tableAt(t, up, "docker.io")
	for _, c := range []struct {
		t    *Table
		key  string
		line int
	}{{root, "listen", 2}, {root, "upstream", 4}, {up, "docker.io", 4}, {dh, "url", 5}, {dh, "tags", 6}, {dh, "ttl", 9}, {root, "tls", 10}, {tableAt(t, root, "tls"), "x", 11}, {root, "missing", 0}} {
		if got := c.t.Line(c.key); got != c.line {
			t.Errorf("%s: line %d, want %d", c.key, got, c.line)
		}
	}
}

// FuzzParse: any document parses or is refused with an error naming a
// line; never a panic or a hang.
func FuzzParse(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if _, err := Parse(src); err != nil && !strings.Contains(err.Error(), "line ") && !strings.Contains(err.Error(), "UTF-8") {
			t.Fatalf("error without a line: %v", err)
		}
	})
}
