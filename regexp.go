package registry

import (
	"fmt"
	"net"
	"strings"

	"github.com/ocipull/registry/internal/wire"
	"github.com/ocipull/registry/oci"
	"github.com/opencontainers/go-digest"
)

// The grammars live in internal/wire (the server and the cache check the
// same rules); these wrap them with typed, actionable errors.

func validateRepository(repo string) error {
	if !wire.ValidRepository(repo) {
		return fmt.Errorf("%w: repository %q: must match %s and be at most %d characters",
			ErrInvalidReference, printable(repo, 80), wire.RepositoryGrammar, wire.MaxRepositoryLength)
	}
	return nil
}

func validateTag(tag string) error {
	if !wire.ValidTag(tag) {
		return fmt.Errorf("%w: tag %q: must match %s", ErrInvalidReference, printable(tag, 80), wire.TagRegexp)
	}
	return nil
}

func validateDigest(d string) error {
	if err := oci.ValidateDigest(digest.Digest(d)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidReference, err)
	}
	return nil
}

// validateHost accepts host[:port] where host is a DNS name, an IPv4
// address or a bracketed IPv6 address, and port is 1-65535.
func validateHost(h string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: host %q: %s", ErrInvalidReference, printable(h, 80), why)
	}
	if h == "" {
		return bad("empty")
	}
	if len(h) > 255 {
		return bad("too long")
	}
	name, port, why := splitHostPortLoose(h)
	if why == "" {
		why = checkHostName(name, strings.HasPrefix(h, "["))
	}
	if why == "" && port != "" {
		if n, err := parseUint(port); err != nil || n < 1 || n > 65535 {
			why = "invalid port"
		}
	}
	if why != "" {
		return bad(why)
	}
	return nil
}

// splitHostPortLoose splits host[:port] or [v6][:port], reporting what is
// wrong with the shape.
func splitHostPortLoose(h string) (name, port, why string) {
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", "", "unclosed ["
		}
		name, rest := h[1:end], h[end+1:]
		if rest == "" {
			return name, "", ""
		}
		if rest[0] != ':' {
			return "", "", "junk after ]"
		}
		if rest == ":" {
			return "", "", "empty port"
		}
		return name, rest[1:], ""
	}
	name = h
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		name, port = h[:i], h[i+1:]
		if port == "" {
			return "", "", "empty port"
		}
	}
	if name == "" {
		return "", "", "empty host name"
	}
	return name, port, ""
}

// checkHostName checks an IPv6 literal (bracketed) or a DNS name / IPv4.
func checkHostName(name string, bracketed bool) string {
	if bracketed {
		if ip := net.ParseIP(name); ip == nil || !strings.Contains(name, ":") {
			return "not an IPv6 address in brackets"
		}
		return ""
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
			strings.TrimLeft(strings.ToLower(label), "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return "invalid host name"
		}
	}
	return ""
}
