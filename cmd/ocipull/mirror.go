package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/mirror"
)

// upstreamFlags collects repeated --upstream [NS=]URL flags.
type upstreamFlags map[string]mirror.Upstream

func (u upstreamFlags) String() string {
	var s []string
	for ns, up := range u {
		s = append(s, ns+"="+up.URL)
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

func (u upstreamFlags) Set(v string) error {
	ns, url := "", v
	if i := strings.Index(v, "="); i >= 0 && !strings.Contains(v[:i], "://") {
		ns, url = v[:i], v[i+1:]
	}
	if !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://") {
		return fmt.Errorf("%q: want [NS=]https://host[:port] (or http:// for a plain-HTTP upstream)", v)
	}
	if _, dup := u[ns]; dup {
		if ns == "" {
			return fmt.Errorf("two default upstreams (without NS=)")
		}
		return fmt.Errorf("upstream %s given twice", ns)
	}
	u[ns] = mirror.Upstream{URL: strings.TrimSuffix(url, "/")}
	return nil
}

// parseSize reads a byte count: a number with an optional unit, decimal
// (K, M, G, T, or KB...) or binary (KiB, MiB, GiB, TiB).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	n, err := strconv.ParseFloat(t[:i], 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (500M, 10GiB)", s)
	}
	units := map[string]float64{"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9, "T": 1e12, "TB": 1e12,
		"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}
	mult, ok := units[strings.ToUpper(strings.TrimSpace(t[i:]))]
	if !ok || n*mult > 1<<62 {
		return 0, fmt.Errorf("size %q: unknown unit or too large", s)
	}
	return int64(n * mult), nil
}

var mirrorCommand = &command{
	name: "mirror", args: "[ls | purge REF | gc]", min: 0, max: 2,
	summary: "run a pull-through cache of one or more registries; list, purge or collect its store",
	examples: []string{"ocipull mirror --cache /var/cache/ocipull --upstream https://registry-1.docker.io --upstream ghcr.io=https://ghcr.io",
		"ocipull mirror --config /etc/ocipull/mirror.toml",
		"ocipull mirror ls --cache /var/cache/ocipull",
		"ocipull mirror purge --cache /var/cache/ocipull docker.io/library/alpine:3.20",
		"ocipull mirror gc --cache /var/cache/ocipull --grace 1h"},
	define: func(f *flags, e *env) func(context.Context) error {
		configFile := f.String("config", "", "", "read the settings from this TOML `FILE` (README: Running the cache in production); flags given as well override it; SIGHUP re-reads it")
		cache := f.String("cache", "", "", "the store: an OCI layout `DIR`, created if missing")
		ups := upstreamFlags{}
		f.Var(ups, "upstream", "", "an upstream registry, `[NS=]URL`; without NS= the default for requests naming none (repeatable)")
		addr := f.String("addr", "", "127.0.0.1:5000", "`HOST:PORT` to listen on")
		ttl := f.Duration("ttl", "", 5*time.Minute, "how long a tag is served before it is revalidated upstream")
		maxSize := f.String("max-size", "", "", "cap the store at `SIZE` (500M, 20GiB...); least recently served content goes first")
		tf := addTLSFlags(f)
		quiet := f.Bool("quiet", "q", "do not log one line per request on stderr")
		logFormat := f.String("log-format", "", "text", "`text` or json: the request log's format on stderr")
		drain := f.Duration("drain-timeout", "", 30*time.Second, "on SIGINT or SIGTERM, how long requests in progress may take to finish")
		username := f.String("username", "u", "", "the upstream `USER`, for the upstream --credentials-for names (default: Docker's config.json, per upstream host)")
		passwordStdin := f.Bool("password-stdin", "", "read the upstream password from standard input")
		credsFor := f.String("credentials-for", "", "", "the upstream `NS` that --username is for (default: the only upstream, or the one without NS=)")
		usersFile := f.String("htpasswd", "", "", "clients log in with the users of this Apache htpasswd `FILE` (bcrypt entries, htpasswd -B); re-read when it changes and on SIGHUP")
		grants := grantFlags{}
		f.Var(grants, "grant", "", "with --htpasswd: `USER=REPO[,REPO]` that USER may pull, upstream-qualified (docker.io/library/alpine; * for all); users without one may pull all (repeatable)")
		adminAddr := f.String("admin-addr", "", "", "serve /metrics, /healthz, /readyz and the Go profiler (/debug/pprof/) on this `HOST:PORT`; /metrics then leaves the serving port")
		noRanges := f.Bool("no-ranges", "", "never fetch a blob from an upstream in parallel byte ranges (for registries that meter requests)")
		prefetch := f.Bool("prefetch-referrers", "", "fetch the referrers (signatures, SBOMs, attestations) of every manifest fetched upstream, in the background, so they are served from the store")
		anonymous := f.String("anonymous", "", "", "with --htpasswd: `REPOS` (comma-separated, upstream-qualified; * for all) anyone may pull without logging in")
		admins := f.List("admin-user", "", "with --htpasswd and --admin-addr: a `USER` who may use the admin API (/admin/v1/: store, purge, gc) with Basic auth (repeatable)")
		tokenLifetime := f.Duration("token-lifetime", "", 5*time.Minute, "with --htpasswd: how long the tokens clients get from /token last")
		grace := f.Duration("grace", "", time.Hour, "gc: keep unnamed content and landings used within this long (a pull in progress may still name them)")
		asJSON := f.Bool("json", "", "ls: print the inventory as JSON")
		return func(ctx context.Context) error {
			if len(e.args) > 0 {
				store := *cache
				if store == "" && *configFile != "" {
					s, err := readMirrorConfig(*configFile)
					if err != nil {
						return err
					}
					store = s.store
				}
				return mirrorAdminCommand(ctx, e, store, e.args, *grace, *asJSON)
			}
			stdin, stdout, stderr := e.stdin, e.stdout, e.stderr
			// The password is read once: a reload re-applies it.
			var creds registry.CredentialSource
			if *username != "" || *passwordStdin {
				var err error
				if creds, err = credentialsFrom(*username, *passwordStdin, stdin); err != nil {
					return err
				}
			} else if *credsFor != "" {
				return usageErr("--credentials-for needs --username and --password-stdin")
			}
			// load reads the settings: the file, then the flags given.
			load := func() (*mirrorSettings, error) {
				s := defaultMirrorSettings()
				if *configFile != "" {
					var err error
					if s, err = readMirrorConfig(*configFile); err != nil {
						return nil, err
					}
				}
				set := func(name string, apply func()) {
					if f.isSet(name) || *configFile == "" {
						apply()
					}
				}
				set("cache", func() { s.store = *cache })
				set("addr", func() { s.listen = *addr })
				set("ttl", func() { s.tagTTL = *ttl })
				set("quiet", func() { s.quiet = *quiet })
				set("log-format", func() { s.logFormat = *logFormat })
				set("drain-timeout", func() { s.drain = *drain })
				set("admin-addr", func() { s.adminListen = *adminAddr })
				set("prefetch-referrers", func() { s.prefetch = *prefetch })
				set("htpasswd", func() { s.htpasswd = *usersFile })
				set("token-lifetime", func() { s.tokenLifetime = *tokenLifetime })
				if len(*admins) > 0 {
					s.admins = *admins
				}
				set("anonymous", func() {
					s.anonymous = nil
					if *anonymous != "" {
						s.anonymous = strings.Split(*anonymous, ",")
					}
				})
				for user, repos := range grants {
					s.grants[user] = repos
				}
				if f.isSet("tls-cert") || f.isSet("tls-key") {
					s.tlsCert, s.tlsKey = *tf.cert, *tf.key
				}
				if *maxSize != "" {
					n, err := parseSize(*maxSize)
					if err != nil {
						return nil, usageErr("--max-size: %v", err)
					}
					s.maxSize = n
				}
				for ns, up := range ups {
					s.upstreams[ns] = &upstreamSettings{url: up.URL, credentials: registry.DockerConfig(""), credentialsNote: "Docker's config.json"}
				}
				if *noRanges {
					for _, up := range s.upstreams {
						up.noRanges = true
					}
				}
				if creds != nil {
					if err := bindCredentials(s.upstreams, creds, *credsFor); err != nil {
						return nil, err
					}
				}
				if s.store == "" || len(s.upstreams) == 0 {
					return nil, usageErr("--cache and at least one --upstream are required (or a --config file naming them)")
				}
				if (s.tlsCert == "") != (s.tlsKey == "") {
					return nil, usageErr("--tls-cert and --tls-key go together")
				}
				if s.htpasswd == "" && (len(s.grants) > 0 || len(s.anonymous) > 0 || len(s.admins) > 0) {
					return nil, usageErr("--grant, --anonymous and --admin-user need --htpasswd")
				}
				return s, nil
			}
			s, err := load()
			if err != nil {
				return err
			}
			out := &lockedWriter{w: stderr}
			// One set of counters for every generation: a reload does not
			// reset /metrics.
			metrics := mirror.NewMetrics()
			g, err := startMirrorGeneration(s, out, e.verbose, metrics)
			if err != nil {
				return err
			}
			front := &mirrorFront{}
			front.cur.Store(g)
			defer func() { front.cur.Load().retire() }()
			var tlsConfig *tls.Config
			var certs *reloadingTLS
			if s.tlsCert != "" {
				if certs, err = newReloadingTLS(s.tlsCert, s.tlsKey, s.clientCA, func(err error) {
					front.cur.Load().logger.Error("TLS files changed but do not load; serving the ones loaded before", "cause", safe(err.Error()))
				}); err != nil {
					return err
				}
				tlsConfig = certs.config()
			}
			if s.adminListen != "" {
				stop, err := serveAdmin(s.adminListen, front.admin(), stdout)
				if err != nil {
					return err
				}
				defer stop()
			}
			ln, url, err := listen(s.listen, tlsConfig)
			if err != nil {
				return err
			}
			// SIGHUP (a closed terminal, or an operator asking for a
			// reload) does not end the cache: it re-reads the settings and,
			// when they are valid, starts serving with them; requests in
			// progress finish with the settings they started with.
			stopHangup := onHangup(func() {
				running := front.cur.Load()
				next, err := load()
				if err != nil {
					running.logger.Error("SIGHUP: configuration refused; the running one stays", "cause", safe(err.Error()))
					return
				}
				if next.listen != s.listen || next.adminListen != s.adminListen || next.store != s.store || (next.tlsCert == "") != (s.tlsCert == "") {
					running.logger.Warn("SIGHUP: the listen address, admin address, store and TLS on/off change only on a restart; keeping them")
					next.listen, next.adminListen, next.store = s.listen, s.adminListen, s.store
					next.tlsCert, next.tlsKey, next.clientCA = s.tlsCert, s.tlsKey, s.clientCA
				}
				if certs != nil {
					if err := certs.setFiles(next.tlsCert, next.tlsKey, next.clientCA); err != nil {
						running.logger.Error("SIGHUP: TLS files refused; the running configuration stays", "cause", safe(err.Error()))
						return
					}
				}
				ng, err := startMirrorGeneration(next, out, e.verbose, metrics)
				if err != nil {
					running.logger.Error("SIGHUP: configuration refused; the running one stays", "cause", safe(err.Error()))
					return
				}
				front.cur.Store(ng)
				go running.retire()
				ng.logger.Info("SIGHUP: configuration reloaded", "upstreams", next.describe())
			})
			defer stopHangup()
			return serveUntilDoneWithin(ctx, ln, front, s.drain, func() {
				fmt.Fprintf(stdout, "mirroring %s into %s at %s\n", s.describe(), s.store, url)
			})
		}
	},
}

// bindCredentials gives the --username and --password-stdin credentials
// to one upstream: the one --credentials-for names, else the only one,
// else the default (no NS=). A password never goes to an upstream it was
// not given for.
func bindCredentials(ups map[string]*upstreamSettings, creds registry.CredentialSource, credsFor string) error {
	key, found := credsFor, credsFor != ""
	if !found {
		if len(ups) == 1 {
			for k := range ups {
				key, found = k, true
			}
		} else if _, ok := ups[""]; ok {
			key, found = "", true
		}
	}
	up, ok := ups[key]
	if !found || !ok {
		var names []string
		for ns := range ups {
			names = append(names, nsName(ns))
		}
		sort.Strings(names)
		return usageErr("--username: name the upstream it is for with --credentials-for NS (one of %s)", strings.Join(names, ", "))
	}
	up.credentials, up.credentialsNote = creds, "--username"
	return nil
}

// mirrorLogger is the cache's log on stderr: one record per request (none
// with --quiet), text or JSON. --verbose adds the debug records.
func mirrorLogger(stderr io.Writer, format string, quiet, verbose bool) (*slog.Logger, error) {
	level := slog.LevelInfo
	switch {
	case verbose:
		level = slog.LevelDebug
	case quiet:
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	w := &lockedWriter{w: stderr}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErr("--log-format: want text or json, not %q", safe(format))
}

// lockedWriter serialises writes (slog's handlers write each record in
// one call, but several handlers may share stderr).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// credentialsFrom are the credentials --username and --password-stdin
// name (the password read from stdin), or else Docker's config.json, per
// host: the registry's for the reading commands, the upstreams' for the
// mirror.
func credentialsFrom(username string, passwordStdin bool, stdin io.Reader) (registry.CredentialSource, error) {
	switch {
	case passwordStdin:
		if username == "" {
			return nil, usageErr("--password-stdin needs --username")
		}
		line, err := bufio.NewReader(io.LimitReader(stdin, 64<<10)).ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading the password from standard input: %w", err)
		}
		password := strings.TrimRight(line, "\r\n")
		if password == "" {
			return nil, usageErr("--password-stdin: standard input held no password")
		}
		return registry.StaticCredentials(username, password), nil
	case username != "":
		return nil, usageErr("--username needs --password-stdin")
	}
	return registry.DockerConfig(""), nil
}

// serveAdmin serves the cache's admin handler and the Go profiler on addr
// until stop is called.
func serveAdmin(addr string, admin http.Handler, stdout io.Writer) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", admin)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	fmt.Fprintf(stdout, "admin at http://%s\n", ln.Addr())
	return func() { hs.Close() }, nil
}
