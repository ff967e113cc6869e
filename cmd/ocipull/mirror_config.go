package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/internal/toml"
	"github.com/ocipull/registry/mirror"
)

// mirrorSettings is everything `ocipull mirror` runs with: read from the
// --config file, then overridden by the flags given on the command line.
type mirrorSettings struct {
	listen, store, adminListen string
	logFormat                  string
	quiet                      bool
	maxSize                    int64
	tagTTL, drain              time.Duration
	prefetch                   bool
	tlsCert, tlsKey, clientCA  string
	htpasswd                   string
	anonymous                  []string
	grants                     map[string][]string
	admins                     []string // htpasswd users of the admin API
	tokenLifetime              time.Duration
	upstreams                  map[string]*upstreamSettings // by ns ("" for the default)
}

// upstreamSettings is one [upstream."NS"] table.
type upstreamSettings struct {
	url                          string
	credentials                  registry.CredentialSource
	credentialsNote              string // how they were given, for the log (never the secret)
	ca                           []string
	clientCert, clientKey        string
	tagTTL, timeout, dialTimeout time.Duration
	noRanges                     bool
	immutable                    []string
	maxConns                     int
}

// defaultMirrorSettings are the flags' defaults.
func defaultMirrorSettings() *mirrorSettings {
	return &mirrorSettings{listen: "127.0.0.1:5000", logFormat: "text", tagTTL: 5 * time.Minute, drain: 30 * time.Second,
		grants: map[string][]string{}, upstreams: map[string]*upstreamSettings{}}
}

// configError is a --config file refused: where and why.
type configError struct {
	file string
	line int
	msg  string
}

func (e *configError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%s:%d: %s", safe(e.file), e.line, e.msg)
	}
	return fmt.Sprintf("%s: %s", safe(e.file), e.msg)
}

// maxConfigSize bounds a --config file.
const maxConfigSize = 1 << 20

// readMirrorConfig reads a --config file (see the README's configuration
// reference). Every key is known, every value checked; the first problem
// is returned with its line.
func readMirrorConfig(file string) (*mirrorSettings, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &configError{file: file, msg: "not a regular file"}
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Bounded however the file changes between the look and the read.
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfigSize {
		return nil, &configError{file: file, msg: fmt.Sprintf("larger than %d bytes", maxConfigSize)}
	}
	root, err := toml.Parse(string(b))
	if err != nil {
		var te *toml.Error
		if errors.As(err, &te) {
			return nil, &configError{file: file, line: te.Line, msg: te.Err.Error()}
		}
		return nil, &configError{file: file, msg: err.Error()}
	}
	s := defaultMirrorSettings()
	r := &tomlReader{file: file, t: root}
	s.listen = r.str("listen", s.listen)
	s.store = r.str("store", "")
	s.adminListen = r.str("admin_listen", "")
	s.logFormat = r.oneOf("log_format", s.logFormat, "text", "json")
	s.quiet = r.boolean("quiet", false)
	if v := r.str("max_size", ""); v != "" && r.err == nil {
		n, err := parseSize(v)
		if err != nil {
			r.fail("max_size", err.Error())
		}
		s.maxSize = n
	}
	s.tagTTL = r.duration("tag_ttl", s.tagTTL)
	s.drain = r.duration("drain_timeout", s.drain)
	s.prefetch = r.boolean("prefetch_referrers", false)
	if t := r.table("tls"); t != nil {
		s.tlsCert, s.tlsKey, s.clientCA = t.str("cert", ""), t.str("key", ""), t.str("client_ca", "")
		if (s.tlsCert == "") != (s.tlsKey == "") {
			t.fail("cert", "cert and key go together")
		}
		if s.clientCA != "" && s.tlsCert == "" {
			t.fail("client_ca", "client certificates need TLS: set cert and key")
		}
		t.known("cert", "key", "client_ca")
	}
	if t := r.table("auth"); t != nil {
		s.htpasswd = t.str("htpasswd", "")
		s.anonymous = t.strings("anonymous")
		s.admins = t.strings("admins")
		s.tokenLifetime = t.duration("token_lifetime", 0)
		if g := t.table("grants"); g != nil {
			for _, user := range g.t.Keys {
				s.grants[user] = g.strings(user)
			}
		}
		if s.htpasswd == "" && (len(s.anonymous) > 0 || len(s.grants) > 0 || len(s.admins) > 0) {
			t.fail("htpasswd", "anonymous, grants and admins need an htpasswd file")
		}
		t.known("htpasswd", "anonymous", "grants", "admins", "token_lifetime")
	}
	if t := r.table("upstream"); t != nil {
		defaults := 0
		for _, ns := range t.t.Keys {
			u := t.table(ns)
			if u == nil {
				break
			}
			up, isDefault := readUpstream(u)
			key := ns
			if isDefault {
				defaults++
				if defaults > 1 {
					u.fail("default", "two upstreams are the default")
				}
				key = ""
			}
			if _, dup := s.upstreams[key]; dup && r.err == nil {
				u.fail("url", "upstream "+ns+" given twice")
			}
			s.upstreams[key] = up
		}
	}
	r.known("listen", "store", "admin_listen", "log_format", "quiet", "max_size", "tag_ttl", "drain_timeout",
		"prefetch_referrers", "tls", "auth", "upstream")
	if r.err == nil && len(s.upstreams) == 0 {
		r.err = &configError{file: file, msg: `no [upstream."NS"] table`}
	}
	if r.err != nil {
		return nil, r.err
	}
	return s, nil
}

// readUpstream reads one [upstream."NS"] table.
func readUpstream(u *tomlReader) (*upstreamSettings, bool) {
	up := &upstreamSettings{}
	up.url = strings.TrimSuffix(u.str("url", ""), "/")
	if !strings.HasPrefix(up.url, "https://") && !strings.HasPrefix(up.url, "http://") {
		u.fail("url", "want https://host[:port] (or http:// for a plain-HTTP upstream)")
	}
	isDefault := u.boolean("default", false)
	up.credentials, up.credentialsNote = u.credentials()
	up.ca = u.strings("ca")
	up.clientCert, up.clientKey = u.str("client_cert", ""), u.str("client_key", "")
	if (up.clientCert == "") != (up.clientKey == "") {
		u.fail("client_cert", "client_cert and client_key go together")
	}
	up.tagTTL = u.duration("tag_ttl", 0)
	up.timeout = u.duration("timeout", 0)
	up.dialTimeout = u.duration("dial_timeout", 0)
	up.noRanges = !u.boolean("ranges", true)
	up.immutable = u.strings("immutable_tags")
	for _, p := range up.immutable {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			u.fail("immutable_tags", fmt.Sprintf("%q is not a pattern (path.Match syntax: v*, 1.2.?)", safe(p)))
		}
	}
	up.maxConns = u.integer("max_conns", 0)
	u.known("url", "default", "credentials", "username", "password", "password_file", "ca", "client_cert", "client_key",
		"tag_ttl", "timeout", "dial_timeout", "ranges", "immutable_tags", "max_conns")
	return up, isDefault
}

// credentials reads how the cache logs in to an upstream: a reference
// (credentials = "docker-config", "docker-config:PATH", "helper:NAME",
// "env:USER_VAR:PASSWORD_VAR" or "none"), or, when the operator insists,
// username with password_file (or password, inline).
func (r *tomlReader) credentials() (registry.CredentialSource, string) {
	ref := r.str("credentials", "")
	user := r.str("username", "")
	pass, passFile := r.str("password", ""), r.str("password_file", "")
	if user != "" || pass != "" || passFile != "" {
		if ref != "" {
			r.fail("credentials", "credentials and username/password exclude each other")
			return nil, ""
		}
		if user == "" || (pass == "") == (passFile == "") {
			r.fail("username", "username needs one of password_file or password")
			return nil, ""
		}
		if passFile != "" {
			b, err := os.ReadFile(passFile)
			if err != nil {
				r.fail("password_file", err.Error())
				return nil, ""
			}
			pass = strings.TrimRight(string(b), "\r\n")
			return registry.StaticCredentials(user, pass), "username and password_file"
		}
		return registry.StaticCredentials(user, pass), "username and an inline password"
	}
	kind, arg, _ := strings.Cut(ref, ":")
	switch kind {
	case "", "docker-config":
		return registry.DockerConfig(arg), "Docker's config.json"
	case "helper":
		if arg == "" || strings.ContainsAny(arg, `/\`) {
			r.fail("credentials", "helper:NAME names docker-credential-NAME")
			return nil, ""
		}
		return registry.CredentialHelper(arg), "docker-credential-" + arg
	case "env":
		userVar, passVar, ok := strings.Cut(arg, ":")
		if !ok || os.Getenv(userVar) == "" || os.Getenv(passVar) == "" {
			r.fail("credentials", "env:USER_VAR:PASSWORD_VAR needs both variables set")
			return nil, ""
		}
		return registry.StaticCredentials(os.Getenv(userVar), os.Getenv(passVar)), "environment " + userVar
	case "none":
		return nil, "anonymous"
	}
	r.fail("credentials", "want docker-config[:PATH], helper:NAME, env:USER_VAR:PASSWORD_VAR or none")
	return nil, ""
}

// tomlReader reads typed values from a table, keeping the first error
// with the line of the key that caused it.
type tomlReader struct {
	file   string
	prefix string // dotted path of the table, for messages
	t      *toml.Table
	err    *configError
	parent *tomlReader // errors go to the root's err
}

func (r *tomlReader) root() *tomlReader {
	for r.parent != nil {
		r = r.parent
	}
	return r
}

func (r *tomlReader) fail(key, msg string) {
	if root := r.root(); root.err == nil {
		root.err = &configError{file: r.file, line: r.t.Line(key), msg: r.prefix + key + ": " + msg}
	}
}

func (r *tomlReader) get(key string) (any, bool) { return r.t.Get(key) }

func (r *tomlReader) str(key, def string) string {
	v, ok := r.get(key)
	if !ok {
		return def
	}
	s, isStr := v.(string)
	if !isStr {
		r.fail(key, "want a string")
		return def
	}
	return s
}

func (r *tomlReader) oneOf(key, def string, choices ...string) string {
	s := r.str(key, def)
	for _, c := range choices {
		if s == c {
			return s
		}
	}
	r.fail(key, "want one of "+strings.Join(choices, ", "))
	return def
}

func (r *tomlReader) boolean(key string, def bool) bool {
	v, ok := r.get(key)
	if !ok {
		return def
	}
	b, isBool := v.(bool)
	if !isBool {
		r.fail(key, "want true or false")
		return def
	}
	return b
}

func (r *tomlReader) integer(key string, def int) int {
	v, ok := r.get(key)
	if !ok {
		return def
	}
	n, isInt := v.(int64)
	if !isInt || n < 0 || n > 1<<20 {
		r.fail(key, "want a whole number from 0 to 1048576")
		return def
	}
	return int(n)
}

func (r *tomlReader) duration(key string, def time.Duration) time.Duration {
	v, ok := r.get(key)
	if !ok {
		return def
	}
	s, isStr := v.(string)
	d, err := time.ParseDuration(s)
	if !isStr || err != nil || d <= 0 {
		r.fail(key, `want a positive duration such as "30s" or "5m"`)
		return def
	}
	return d
}

func (r *tomlReader) strings(key string) []string {
	v, ok := r.get(key)
	if !ok {
		return nil
	}
	if s, isStr := v.(string); isStr {
		return []string{s}
	}
	list, isList := v.([]any)
	var out []string
	for _, e := range list {
		s, isStr := e.(string)
		if !isStr {
			isList = false
			break
		}
		out = append(out, s)
	}
	if !isList {
		r.fail(key, "want a string or a list of strings")
		return nil
	}
	return out
}

func (r *tomlReader) table(key string) *tomlReader {
	v, ok := r.get(key)
	if !ok {
		return nil
	}
	t, isTable := v.(*toml.Table)
	if !isTable {
		r.fail(key, "want a table")
		return nil
	}
	return &tomlReader{file: r.file, prefix: r.prefix + tomlKey(key) + ".", t: t, parent: r}
}

// known refuses any key of the table not among names: a misspelt key
// is an error, never silently ignored.
func (r *tomlReader) known(names ...string) {
	for _, k := range r.t.Keys {
		if !slices.Contains(names, k) {
			r.fail(k, "unknown key (known: "+strings.Join(names, ", ")+")")
		}
	}
}

// tomlKey quotes a key that is not bare, as it was written.
func tomlKey(k string) string {
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Sprintf("%q", k)
		}
	}
	return k
}

// cacheConfig makes the library's configuration of the settings: each
// upstream with its credentials, CA and client certificate (files read
// now: a reload reads them again).
func (s *mirrorSettings) cacheConfig() (mirror.Config, error) {
	cfg := mirror.Config{Upstreams: map[string]mirror.Upstream{}, TagTTL: s.tagTTL, MaxSize: s.maxSize,
		MetricsOnAdminOnly: s.adminListen != "", PrefetchReferrers: s.prefetch}
	for ns, up := range s.upstreams {
		u := mirror.Upstream{URL: up.url, Credentials: up.credentials, Timeout: up.timeout, DialTimeout: up.dialTimeout,
			NoRanges: up.noRanges, MaxConns: up.maxConns, TagTTL: up.tagTTL, ImmutableTags: up.immutable}
		tc, err := registry.ClientTLSConfig(up.ca, up.clientCert, up.clientKey)
		if err != nil {
			return mirror.Config{}, fmt.Errorf("upstream %s: %w", nsName(ns), err)
		}
		u.TLSConfig = tc
		cfg.Upstreams[ns] = u
	}
	return cfg, nil
}

func nsName(ns string) string {
	if ns == "" {
		return "(default)"
	}
	return safe(ns)
}

// describe is the settings in one line for the log (never a secret).
func (s *mirrorSettings) describe() string {
	var ups []string
	for ns, up := range s.upstreams {
		ups = append(ups, nsName(ns)+"="+safe(up.url))
	}
	sort.Strings(ups)
	return strings.Join(ups, ",")
}
