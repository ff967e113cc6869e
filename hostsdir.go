package registry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ocipull/registry/internal/toml"
)

// ErrInvalidConfig means a hosts.toml file or a certificate directory
// could not be used: a syntax error, an unknown capability, a missing or
// unreadable certificate or key. The message names the file.
var ErrInvalidConfig = errors.New("invalid registry host configuration")

// DefaultHostsDirs returns the certificate and hosts directories read by
// [Registry.LoadHostsDir] when it is given none: containerd's, Docker's and
// the containers tools' (Podman, Skopeo, Buildah).
func DefaultHostsDirs() []string {
	return []string{"/etc/containerd/certs.d", "/etc/docker/certs.d", "/etc/containers/certs.d"}
}

// maxConfigFile caps a hosts.toml, certificate or key file.
const maxConfigFile = 1 << 20

// LoadHostsDir configures the client for c.Host from a certs.d root as
// containerd and Docker lay it out: one directory per registry, named
// host:port (or containerd's host_port_ form; Docker Hub is "docker.io"),
// or "_default" for every registry. roots are searched in order (all of
// them for the registry's own directory, then all for "_default"); the
// first directory found is used and the rest are not read. With no
// roots, [DefaultHostsDirs].
//
// A directory with a hosts.toml is read as containerd reads it (the
// subset pulling needs): each [host."URL"] table becomes a mirror in file
// order, with its capabilities ("pull", "resolve"; "push" and "referrers"
// are accepted and ignored, a host with neither pull nor resolve is left
// out), ca, client (a certificate, or [certificate, key] pairs),
// skip_verify, override_path, header (sent to that host only) and
// dial_timeout; the top-level server, ca, client, skip_verify, header and
// dial_timeout describe the registry. A server other than c.Host (or with
// a path or restricted capabilities) becomes the last endpoint and the
// registry itself is not contacted (MirrorsOnly). Other keys are
// ignored. A file that does not parse is an error, not skipped.
//
// A directory without hosts.toml is Docker's: every *.crt is a CA added
// to the system's, every *.cert with its *.key is a client certificate,
// for the registry (TLSConfig).
//
// It sets Mirrors and MirrorsOnly; TLSConfig, Header and DialTimeout
// when the directory configures them for the registry (values set before
// are kept otherwise); and, for an http server, Scheme; call it before the
// client's first use. Relative paths in
// hosts.toml are relative to its directory. Errors wrap
// [ErrInvalidConfig]; no directory found is not an error.
func (r *Registry) LoadHostsDir(roots ...string) error {
	if err := validateHost(r.Host); err != nil {
		return err
	}
	if len(roots) == 0 {
		roots = DefaultHostsDirs()
	}
	dir, err := findHostDir(roots, r.Host)
	if dir == "" || err != nil {
		return err
	}
	b, err := readConfigFile(filepath.Join(dir, "hosts.toml"))
	if errors.Is(err, fs.ErrNotExist) {
		cfg, err := dockerCertsTLS(dir)
		if err != nil {
			return err
		}
		if cfg != nil {
			r.TLSConfig = cfg
		}
		return nil
	}
	if err != nil {
		if errors.Is(err, ErrInvalidConfig) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	return r.applyHostsFile(dir, b)
}

// hostDirNames are the directory names of a registry host, most specific
// first.
func hostDirNames(host string) []string {
	var names []string
	if h, port, err := net.SplitHostPort(host); err == nil {
		names = append(names, h+"_"+port+"_")
	}
	names = append(names, host)
	if RegistryName(host) == dockerHubDomain && host != dockerHubDomain {
		names = append([]string{dockerHubDomain}, names...)
	}
	return names
}

// findHostDir is the first directory for host under roots, or "".
func findHostDir(roots []string, host string) (string, error) {
	for _, pass := range [][]string{hostDirNames(host), {"_default"}} {
		for _, root := range roots {
			for _, name := range pass {
				p := filepath.Join(root, name)
				fi, err := os.Stat(p)
				switch {
				case err == nil && fi.IsDir():
					return p, nil
				case err == nil, errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission) && root != "" && isDefaultRoot(root):
					continue
				default:
					return "", fmt.Errorf("%w: %v", ErrInvalidConfig, err)
				}
			}
		}
	}
	return "", nil
}

func isDefaultRoot(root string) bool {
	for _, d := range DefaultHostsDirs() {
		if root == d {
			return true
		}
	}
	return false
}

// readConfigFile reads a small regular file (following symlinks, as /etc
// certificate directories use them; a FIFO or device is refused without
// being opened for reading).
func readConfigFile(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s: not a regular file", ErrInvalidConfig, p)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidConfig, p, err)
	}
	if len(b) > maxConfigFile {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrInvalidConfig, p, maxConfigFile)
	}
	return b, nil
}

// dockerCertsTLS reads Docker's certificate files in dir: nil when there
// are none.
func dockerCertsTLS(dir string) (*tls.Config, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	var h hostTLS
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".crt"):
			h.cas = append(h.cas, filepath.Join(dir, name))
		case strings.HasSuffix(name, ".cert"):
			key := strings.TrimSuffix(name, ".cert") + ".key"
			if !names[key] {
				return nil, fmt.Errorf("%w: %s: client certificate without its key %s", ErrInvalidConfig, filepath.Join(dir, name), key)
			}
			h.pairs = append(h.pairs, [2]string{filepath.Join(dir, name), filepath.Join(dir, key)})
		case strings.HasSuffix(name, ".key"):
			if !names[strings.TrimSuffix(name, ".key")+".cert"] {
				return nil, fmt.Errorf("%w: %s: key without its client certificate %s", ErrInvalidConfig, filepath.Join(dir, name), strings.TrimSuffix(name, ".key")+".cert")
			}
		}
	}
	return h.config()
}

// ClientTLSConfig loads a TLS client configuration from files, as the
// hosts.toml and certs.d readers do: each CA file (PEM) is added to the
// system's roots, and certFile with keyFile ("" when the key is in
// certFile) is the client certificate. Both may be empty; nil when
// nothing is given. Errors wrap [ErrInvalidConfig] and name the file.
func ClientTLSConfig(caFiles []string, certFile, keyFile string) (*tls.Config, error) {
	h := hostTLS{cas: caFiles}
	if certFile != "" {
		h.pairs = [][2]string{{certFile, keyFile}}
	}
	return h.config()
}

// hostTLS is the TLS part of one host's configuration, as file names.
type hostTLS struct {
	cas        []string
	pairs      [][2]string // certificate, key ("" means in the certificate's file)
	skipVerify *bool
}

// config loads the files: nil when nothing is configured.
func (h hostTLS) config() (*tls.Config, error) {
	if len(h.cas) == 0 && len(h.pairs) == 0 && h.skipVerify == nil {
		return nil, nil
	}
	cfg := &tls.Config{}
	if h.skipVerify != nil {
		cfg.InsecureSkipVerify = *h.skipVerify
	}
	if len(h.cas) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, f := range h.cas {
			b, err := readConfigFile(f)
			if err != nil {
				return nil, fmt.Errorf("%w: CA %s: %v", ErrInvalidConfig, f, err)
			}
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("%w: CA %s: no PEM certificate in it", ErrInvalidConfig, f)
			}
		}
		cfg.RootCAs = pool
	}
	for _, pair := range h.pairs {
		certPEM, err := readConfigFile(pair[0])
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate %s: %v", ErrInvalidConfig, pair[0], err)
		}
		keyPEM := certPEM
		if pair[1] != "" {
			if keyPEM, err = readConfigFile(pair[1]); err != nil {
				return nil, fmt.Errorf("%w: client key %s: %v", ErrInvalidConfig, pair[1], err)
			}
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate %s: %v", ErrInvalidConfig, pair[0], err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, nil
}

// hostEntry is one host of a hosts.toml, before its files are loaded.
type hostEntry struct {
	ep  Endpoint
	tls hostTLS
}

// applyHostsFile reads a hosts.toml in dir into the client's fields.
func (r *Registry) applyHostsFile(dir string, b []byte) error {
	file := filepath.Join(dir, "hosts.toml")
	entries, server, err := parseHostsFile(dir, string(b))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidConfig, file, err)
	}
	var mirrors []Endpoint
	for _, e := range entries {
		if e.ep.Capabilities == 0 {
			continue
		}
		if e.ep.TLSConfig, err = e.tls.config(); err != nil {
			return fmt.Errorf("%s: host %s: %w", file, e.ep, err)
		}
		mirrors = append(mirrors, e.ep)
	}
	cfg, err := server.tls.config()
	if err != nil {
		return fmt.Errorf("%s: server: %w", file, err)
	}
	server.ep.TLSConfig = cfg
	plain := server.ep.Host == "" || (server.ep.Host == r.Host || RegistryName(server.ep.Host) == RegistryName(r.Host)) &&
		server.ep.Path == "/v2" && server.ep.Capabilities == CapabilityPull|CapabilityResolve
	r.Mirrors, r.MirrorsOnly = mirrors, false
	switch {
	case plain:
		if cfg != nil {
			r.TLSConfig = cfg
		}
		if server.ep.Header != nil {
			r.Header = server.ep.Header
		}
		if server.ep.DialTimeout != 0 {
			r.DialTimeout = server.ep.DialTimeout
		}
		if server.ep.Scheme == "http" {
			r.Scheme = "http"
		}
	case server.ep.Capabilities == 0:
		r.MirrorsOnly = true
	default:
		r.Mirrors, r.MirrorsOnly = append(mirrors, server.ep), true
	}
	if r.MirrorsOnly && len(r.Mirrors) == 0 {
		return fmt.Errorf("%w: %s: no host and no server that may pull", ErrInvalidConfig, file)
	}
	return nil
}

// parseHostsFile reads the host entries (in file order) and the server
// entry (Host empty when the file names none) of a hosts.toml.
func parseHostsFile(dir, src string) ([]hostEntry, hostEntry, error) {
	root, err := toml.Parse(src)
	if err != nil {
		return nil, hostEntry{}, err
	}
	var entries []hostEntry
	if v, ok := root.Get("host"); ok {
		hosts, isTable := v.(*toml.Table)
		if !isTable {
			return nil, hostEntry{}, errors.New("host: want tables [host.\"URL\"]")
		}
		for _, name := range hosts.Keys {
			v, _ := hosts.Get(name)
			t, isTable := v.(*toml.Table)
			if !isTable {
				return nil, hostEntry{}, fmt.Errorf("host %q: want a table", name)
			}
			e, err := parseHostEntry(dir, name, t)
			if err != nil {
				return nil, hostEntry{}, fmt.Errorf("host %q: %w", name, err)
			}
			entries = append(entries, e)
		}
	}
	server := ""
	if v, ok := root.Get("server"); ok {
		s, isString := v.(string)
		if !isString {
			return nil, hostEntry{}, errors.New("server: want a string")
		}
		server = s
	}
	se, err := parseHostEntry(dir, server, root)
	if err != nil {
		return nil, hostEntry{}, fmt.Errorf("server: %w", err)
	}
	return entries, se, nil
}

// parseHostEntry reads one host's keys; name is its URL ("" for a
// server the file does not name).
func parseHostEntry(dir, name string, t *toml.Table) (hostEntry, error) {
	var e hostEntry
	override := false
	if v, ok := t.Get("override_path"); ok {
		b, isBool := v.(bool)
		if !isBool {
			return e, errors.New("override_path: want true or false")
		}
		override = b
	}
	if name != "" {
		ep, err := parseEndpointURL(name, override)
		if err != nil {
			return e, err
		}
		e.ep = ep
	} else {
		e.ep.Path = "/v2"
	}
	e.ep.Capabilities = CapabilityPull | CapabilityResolve
	if v, ok := t.Get("capabilities"); ok {
		list, err := stringList(v, "capabilities")
		if err != nil {
			return e, err
		}
		e.ep.Capabilities = 0
		for _, c := range list {
			switch strings.ToLower(c) {
			case "pull":
				e.ep.Capabilities |= CapabilityPull
			case "resolve":
				e.ep.Capabilities |= CapabilityResolve
			case "push", "referrers":
			default:
				return e, fmt.Errorf("unknown capability %q", printable(c, 40))
			}
		}
	}
	if err := parseHostConn(&e.ep, t); err != nil {
		return e, err
	}
	var err error
	e.tls, err = parseHostTLS(dir, t)
	return e, err
}

// parseHostConn reads a host's header table (each value a string or an
// array of strings) and dial_timeout (a Go duration, as "500ms").
func parseHostConn(ep *Endpoint, t *toml.Table) error {
	if v, ok := t.Get("header"); ok {
		ht, isTable := v.(*toml.Table)
		if !isTable {
			return errors.New("header: want a table of field names")
		}
		ep.Header = http.Header{}
		for _, name := range ht.Keys {
			hv, _ := ht.Get(name)
			values, err := stringList(hv, "header "+printable(name, 60))
			if err != nil {
				return err
			}
			key := http.CanonicalHeaderKey(name)
			ep.Header[key] = append(ep.Header[key], values...)
		}
		if err := validateHeader(ep.Header); err != nil {
			return fmt.Errorf("header: %v", err)
		}
	}
	if v, ok := t.Get("dial_timeout"); ok {
		s, isString := v.(string)
		if !isString {
			return errors.New(`dial_timeout: want a duration string, as "5s"`)
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("dial_timeout %q: want a positive duration, as \"5s\"", printable(s, 40))
		}
		ep.DialTimeout = d
	}
	return nil
}

// parseHostTLS reads a host's skip_verify, ca and client keys; relative
// file names are relative to dir.
func parseHostTLS(dir string, t *toml.Table) (hostTLS, error) {
	var h hostTLS
	if v, ok := t.Get("skip_verify"); ok {
		b, isBool := v.(bool)
		if !isBool {
			return h, errors.New("skip_verify: want true or false")
		}
		h.skipVerify = &b
	}
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if v, ok := t.Get("ca"); ok {
		list, err := stringList(v, "ca")
		if err != nil {
			return h, err
		}
		for _, p := range list {
			h.cas = append(h.cas, abs(p))
		}
	}
	if v, ok := t.Get("client"); ok {
		pairs, err := clientPairs(v)
		if err != nil {
			return h, err
		}
		for _, p := range pairs {
			if p[1] != "" {
				p[1] = abs(p[1])
			}
			h.pairs = append(h.pairs, [2]string{abs(p[0]), p[1]})
		}
	}
	return h, nil
}

// stringList reads a string or an array of strings.
func stringList(v any, key string) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("%s: want strings", key)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: want a string or an array of strings", key)
}

// clientPairs reads client: a certificate file (its key inside), an array
// of those, or an array of [certificate, key] pairs.
func clientPairs(v any) ([][2]string, error) {
	switch v := v.(type) {
	case string:
		return [][2]string{{v, ""}}, nil
	case []any:
		var out [][2]string
		for _, x := range v {
			switch x := x.(type) {
			case string:
				out = append(out, [2]string{x, ""})
			case []any:
				pair, err := stringList(x, "client")
				if err != nil || len(pair) != 2 {
					return nil, errors.New("client: a pair is [certificate, key]")
				}
				out = append(out, [2]string{pair[0], pair[1]})
			default:
				return nil, errors.New("client: want file names or [certificate, key] pairs")
			}
		}
		return out, nil
	}
	return nil, errors.New("client: want a file name or an array")
}
