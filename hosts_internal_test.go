package registry

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// The realm and redirect host check, after normalisation: every form that
// reaches an internal address is internal.
func TestIsInternalHost(t *testing.T) {
	internal := []string{
		"localhost", "LOCALHOST", "localhost.", "foo.localhost", "127.0.0.1", "127.1", "2130706433",
		"0x7f000001", "0177.0.0.1", "0x7f.1", "::1", "[::1]", "[::1%25lo]", "::1%lo",
		"::ffff:127.0.0.1", "[::ffff:127.0.0.1%25lo]", "fe80::1", "[fe80::1%25lo]",
		"169.254.169.254", "169.254.169.254.", "100.100.100.200", "100.64.0.1", "10.0.0.1",
		"192.168.1.1", "172.16.0.1", "0.0.0.0", "0", "metadata.google.internal", "metadata.google.internal.",
		"metadata", "intranet", "printer.local", "fd00::1", "64:ff9b::a9fe:a9fe", "224.0.0.1",
	}
	for _, h := range internal {
		if !isInternalHost(h) {
			t.Errorf("isInternalHost(%q) = false, want true", h)
		}
	}
	public := []string{"registry-1.docker.io", "auth.docker.io", "ghcr.io", "8.8.8.8", "100.128.0.1", "2001:4860::8888", "1.2.3.4.nip.example"}
	for _, h := range public {
		if isInternalHost(h) {
			t.Errorf("isInternalHost(%q) = true, want false", h)
		}
	}
}

// A registry on a public name may not send the client (and the user's
// credentials) to an internal token realm in any of its forms.
func TestCheckRealmRefusesInternalForms(t *testing.T) {
	tr := newTransport(&Registry{Host: "registry.example.com"}, nil)
	for _, realm := range []string{
		"https://[::1%25lo]:5000/token", "https://[::ffff:127.0.0.1%25lo]/token", "https://[fe80::1%25lo]/token",
		"https://localhost./token", "https://169.254.169.254./latest", "https://127.1/token",
		"https://2130706433/token", "https://0x7f000001/token", "https://0177.0.0.1/token",
		"https://100.100.100.200/token", "https://metadata.google.internal/token",
	} {
		if err := tr.checkRealm(realm); !errors.Is(err, ErrProtocol) {
			t.Errorf("checkRealm(%q) = %v, want a refusal", realm, err)
		}
	}
	if err := tr.checkRealm("https://auth.example.com/token"); err != nil {
		t.Errorf("public realm refused: %v", err)
	}
	// A registry that is itself internal may use internal realms.
	local := newTransport(&Registry{Host: "127.0.0.1:5000"}, nil)
	if err := local.checkRealm("http://127.0.0.1:5001/token"); err != nil {
		t.Errorf("local realm for a local registry refused: %v", err)
	}
}

// The dialled address is checked too: a request marked for the check
// cannot connect to an internal address, whatever name led there.
func TestDialControlRefusesInternalAddress(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ts.Close()
	tr := newTransport(&Registry{Host: "registry.example.com", StallTimeout: -1}, nil)
	// "localhost" resolves to loopback: the name passed no URL check of
	// its own here; the dialled address is what is refused.
	_, port, _ := net.SplitHostPort(ts.Listener.Addr().String())
	req, _ := http.NewRequestWithContext(withDialCheck(context.Background()), "GET", "http://localhost:"+port+"/", nil)
	if _, err := tr.send(req); !errors.Is(err, ErrProtocol) {
		t.Fatalf("marked request to a loopback address: got %v, want a refusal", err)
	}
	req, _ = http.NewRequest("GET", ts.URL, nil)
	resp, err := tr.send(req)
	if err != nil {
		t.Fatalf("unmarked request: %v", err)
	}
	resp.Body.Close()
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"[::1%25lo]", "127.1", "0x7f000001", "0177.0.0.1", "localhost.", "::ffff:127.0.0.1", "4294967296", "1.2.3.4.5", "0x", "..."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, ip := normalizeHost(s)
		if ip.IsValid() && ip.Is4In6() {
			t.Fatalf("%q: address not unmapped: %v", s, ip)
		}
		if name != strings.ToLower(name) {
			t.Fatalf("%q: name %q not lower-cased", s, name)
		}
		isInternalHost(s)
	})
}

// AllowBasicOverHTTP is for the registry's own host: never for a token
// realm (or anything else) on another host over plain HTTP.
func TestBasicOverHTTPOnlyToRegistryHost(t *testing.T) {
	tr := newTransport(&Registry{Host: "registry.example:5000", AllowBasicOverHTTP: true}, nil)
	if err := tr.checkBasicAllowed("http", "registry.example:5001"); err != nil {
		t.Errorf("the registry's own host: %v", err)
	}
	if err := tr.checkBasicAllowed("http", "auth.other.example"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("another host: got %v, want a refusal", err)
	}
	if err := tr.checkBasicAllowed("https", "auth.other.example"); err != nil {
		t.Errorf("https: %v", err)
	}
	off := newTransport(&Registry{Host: "registry.example"}, nil)
	if err := off.checkBasicAllowed("http", "registry.example"); err == nil {
		t.Error("plain HTTP without the opt-in was allowed")
	}
}

// FuzzListURL: the loop detector's normalisation never panics, is
// idempotent, and makes the equivalent forms of the hostile cases one URL.
func FuzzListURL(f *testing.F) {
	for _, s := range []string{
		"https://r.example/v2/a/tags/list?last=x&", "https://r.example/v2/a/tags/list?last=x&&",
		"https://r.example/v2/a/tags/list?&last=x", "https://R.example:443//v2/a/tags/list?n=1&last=x",
		"http://r.example:80/v2/_catalog?last=a%2Fb", "https://r/v2?%zz=1", "https://r/v2?;;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		n := normalizeListURL(u)
		u2, err := url.Parse(n)
		if err != nil {
			return
		}
		if again := normalizeListURL(u2); again != n && u2.Host == strings.ToLower(u2.Host) {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, n, again)
		}
	})
}

func TestListURLEquivalents(t *testing.T) {
	var first uint64
	for i, s := range []string{
		"https://r.example/v2/a/tags/list?last=x", "https://r.example/v2/a/tags/list?last=x&",
		"https://r.example/v2/a/tags/list?last=x&&", "https://r.example/v2/a/tags/list?&last=x",
		"https://R.EXAMPLE:443/v2/a/tags/list?last=x", "https://r.example//v2/a/tags/list?last=x",
	} {
		u, _ := url.Parse(s)
		if h := urlHash(u); i == 0 {
			first = h
		} else if h != first {
			t.Errorf("%q is not the same page as the first", s)
		}
	}
}
