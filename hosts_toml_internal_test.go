package registry

import (
	"reflect"
	"testing"
)

// The hosts.toml examples of containerd's documentation and our own
// hostile cases; FuzzParseHostsFile starts from them (the TOML syntax's
// own cases are internal/toml's).
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
	`[host."https://m"]` + "\n" + `capabilities = ["fly"]`,
	`[host."ftp://m"]`,
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
