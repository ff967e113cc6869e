package registry

import (
	"reflect"
	"strings"
	"testing"
)

// The hosts.toml examples of containerd's documentation and our own
// hostile cases; FuzzParseHostsFile starts from them.
var hostsTOMLSeeds = []string{
	`server = "https://registry-1.docker.io"

[host."https://mirror.example.com"]
  capabilities = ["pull", "resolve"]
  ca = "/etc/certs/mirror.pem"
  skip_verify = false
  [host."https://mirror.example.com".header]
    x-custom-2 = ["value1", "value2"]
`,
	`[host."https://test-1.registry"]
  capabilities = ["pull", "resolve", "push"]
  ca = ["/etc/path/default"]
  client = [["/etc/certs/client.cert", "/etc/certs/client.key"],["/etc/certs/client.pem", ""]]

[host."http://test-2.registry:5000/v2/prefix"]
  capabilities = ["pull"]
  override_path = true
  dial_timeout = "3s"
`,
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

func TestParseTOMLSubset(t *testing.T) {
	root, err := parseTOML(hostsTOMLSeeds[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := root.vals["server"]; got != "https://registry-1.docker.io" {
		t.Errorf("server = %v", got)
	}
	host := root.vals["host"].(*tomlTable).vals["https://mirror.example.com"].(*tomlTable)
	if got := host.vals["capabilities"]; !reflect.DeepEqual(got, []any{"pull", "resolve"}) {
		t.Errorf("capabilities = %#v", got)
	}
	if host.vals["skip_verify"] != false {
		t.Errorf("skip_verify = %#v", host.vals["skip_verify"])
	}
	hdr := host.vals["header"].(*tomlTable)
	if !reflect.DeepEqual(hdr.vals["x-custom-2"], []any{"value1", "value2"}) {
		t.Errorf("header = %#v", hdr.vals)
	}
	for src, want := range map[string]any{
		hostsTOMLSeeds[5]: "é\t\"q\"",
		hostsTOMLSeeds[6]: int64(1000),
		hostsTOMLSeeds[7]: []any{[]any{[]any{"deep"}}},
		`a = 'C:\path'`:   `C:\path`,
		`"a" = -7`:        int64(-7),
	} {
		root, err := parseTOML(src)
		if err != nil {
			t.Errorf("%q: %v", src, err)
			continue
		}
		if !reflect.DeepEqual(root.vals["a"], want) {
			t.Errorf("%q: a = %#v, want %#v", src, root.vals["a"], want)
		}
	}
	for _, bad := range hostsTOMLSeeds[8:] {
		if _, err := parseTOML(bad); err == nil {
			t.Errorf("%q parsed, want an error", bad)
		}
	}
	if _, err := parseTOML("a = 1\nb = 2.5\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error %v does not name line 2", err)
	}
}

func TestParseHostsFileOrderAndFields(t *testing.T) {
	entries, server, err := parseHostsFile("/etc/containerd/certs.d/docker.io", hostsTOMLSeeds[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || server.ep.Host != "" {
		t.Fatalf("entries %+v, server %+v", entries, server)
	}
	e1, e2 := entries[0], entries[1]
	if e1.ep.String() != "https://test-1.registry/v2" || e1.ep.Capabilities != CapabilityPull|CapabilityResolve {
		t.Errorf("first host %v caps %b", e1.ep, e1.ep.Capabilities)
	}
	if !reflect.DeepEqual(e1.tls.pairs, [][2]string{{"/etc/certs/client.cert", "/etc/certs/client.key"}, {"/etc/certs/client.pem", ""}}) {
		t.Errorf("client pairs %q", e1.tls.pairs)
	}
	if e2.ep.String() != "http://test-2.registry:5000/v2/prefix" || e2.ep.Capabilities != CapabilityPull {
		t.Errorf("second host %v caps %b (override_path keeps the path as is)", e2.ep, e2.ep.Capabilities)
	}
	if _, _, err := parseHostsFile("/d", `[host."https://m"]`+"\ncapabilities = [\"fly\"]\n"); err == nil {
		t.Error("unknown capability accepted")
	}
	if _, _, err := parseHostsFile("/d", `[host."ftp://m"]`); err == nil {
		t.Error("ftp host accepted")
	}
}

// FuzzParseHostsFile feeds arbitrary documents to the hosts.toml reader:
// it must never panic or hang, and every endpoint it accepts must be one
// a Client accepts.
func FuzzParseHostsFile(f *testing.F) {
	for _, s := range hostsTOMLSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		entries, server, err := parseHostsFile("/base", src)
		if err != nil {
			return
		}
		c := (&Registry{Host: "registry.example"}).Repository("a/b")
		for _, e := range append(entries, server) {
			if e.ep.Host == "" {
				continue
			}
			c.Registry().Mirrors = append(c.Registry().Mirrors, e.ep)
		}
		if err := c.Registry().validateEndpoints(); err != nil {
			t.Fatalf("parsed endpoints %+v are refused by the client: %v", c.Registry().Mirrors, err)
		}
	})
}
