package registry

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Host classification: which hosts a registry on a public name may not
// point the client at (token realms, redirects), because they reach the
// machine itself, its network or a cloud metadata service. Every form a
// resolver or a URL parser accepts for such an address is normalised
// first: IPv6 zones ("[::1%25lo]"), trailing dots ("localhost."), the
// numeric IPv4 forms of inet_aton ("127.1", "2130706433", "0x7f000001",
// "0177.0.0.1") and IPv4-mapped IPv6 ("::ffff:127.0.0.1").

// internalNames are host names (after normalisation) that are internal by
// themselves; names under the .localhost, .internal and .local domains
// are too, and so are single-label names, which only a local resolver
// answers.
var internalNames = map[string]bool{"localhost": true, "metadata": true}

// normalizeHost lower-cases host, drops brackets, an IPv6 zone and
// trailing dots, and parses it as an IP address in any numeric form. ip is
// invalid when host is a name; it is unmapped (an IPv4-mapped IPv6 address
// becomes IPv4).
func normalizeHost(host string) (name string, ip netip.Addr) {
	h := strings.ToLower(strings.TrimSpace(host))
	h = strings.TrimPrefix(strings.TrimSuffix(h, "]"), "[")
	if i := strings.IndexByte(h, '%'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimRight(h, ".")
	if a, err := netip.ParseAddr(h); err == nil {
		return h, a.Unmap()
	}
	if a, ok := parseIPv4Loose(h); ok {
		return h, a
	}
	return h, netip.Addr{}
}

// parseIPv4Loose parses the numeric IPv4 forms inet_aton accepts: one to
// four parts separated by dots, each decimal, octal (leading 0) or hex
// (0x), the last part filling the remaining bytes.
func parseIPv4Loose(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if s == "" || len(parts) > 4 {
		return netip.Addr{}, false
	}
	var vals []uint64
	for _, p := range parts {
		v, err := strconv.ParseUint(p, 0, 32)
		if err != nil || p == "" {
			return netip.Addr{}, false
		}
		vals = append(vals, v)
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 255 {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*i)
	}
	last := vals[len(vals)-1]
	if last >= 1<<(8*(5-len(vals))) {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// isInternalHost reports hosts that reach the machine itself, a private
// or shared network, or a metadata service: loopback, private (RFC 1918,
// RFC 4193), shared/CGNAT (RFC 6598, which clouds use for metadata), link-
// local, unspecified and multicast addresses in any form, NAT64 forms of
// those, and internal names. Names are not resolved here; the dialled
// address is checked separately (withDialCheck).
func isInternalHost(host string) bool {
	name, ip := normalizeHost(host)
	if ip.IsValid() {
		return isInternalAddr(ip)
	}
	if name == "" || internalNames[name] || !strings.Contains(name, ".") {
		return true
	}
	for _, suffix := range []string{".localhost", ".internal", ".local"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

var (
	sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")
	thisNetwork        = netip.MustParsePrefix("0.0.0.0/8")
	nat64Prefix        = netip.MustParsePrefix("64:ff9b::/96")
	siteLocal          = netip.MustParsePrefix("fec0::/10")
)

// isInternalAddr classifies an address as described on isInternalHost.
func isInternalAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if nat64Prefix.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast() ||
		sharedAddressSpace.Contains(ip) || thisNetwork.Contains(ip) || siteLocal.Contains(ip) ||
		ip == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// hostOnly drops the port of host[:port] and the brackets of an IPv6 address.
func hostOnly(hostport string) string {
	h := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		h = hh
	}
	return strings.Trim(h, "[]")
}

// isLoopback reports whether host is localhost (or a name under
// .localhost) or a loopback address, in any form normalizeHost reads.
func isLoopback(host string) bool {
	name, ip := normalizeHost(host)
	if ip.IsValid() {
		return ip.IsLoopback()
	}
	return name == "localhost" || strings.HasSuffix(name, ".localhost")
}

// dialCheckKey marks a request whose dialled address must not be
// internal: a token realm or redirect target of a registry that is not
// itself internal, so that DNS cannot smuggle in what the URL check
// refused. It is request plumbing inside this package, never configuration.
type dialCheckKey struct{}

func withDialCheck(ctx context.Context) context.Context {
	return context.WithValue(ctx, dialCheckKey{}, true)
}

func dialChecked(ctx context.Context) bool {
	v, _ := ctx.Value(dialCheckKey{}).(bool)
	return v
}

// dialControl refuses to connect to an internal address (run by the
// client's own dialer for requests marked withDialCheck).
func (t *transport) dialControl(network, address string) error {
	return dialControlFor(t.host)(network, address)
}

// dialControlFor is the dial check of a client of registry (named in the
// error); the mirror's upstream transports use it too.
func dialControlFor(registry string) func(network, address string) error {
	return func(_, address string) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			host = address
		}
		if ip, perr := netip.ParseAddr(host); perr == nil && isInternalAddr(ip) {
			return fmt.Errorf("%w: refusing to connect to internal address %s for registry %s", ErrProtocol, host, printable(registry, 80))
		}
		return nil
	}
}
