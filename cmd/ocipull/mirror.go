package main

import (
	"bufio"
	"context"
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
	name: "mirror", args: "", min: 0, max: 0,
	summary:  "run a pull-through cache of one or more registries",
	examples: []string{"ocipull mirror --cache /var/cache/ocipull --upstream https://registry-1.docker.io --upstream ghcr.io=https://ghcr.io"},
	define: func(f *flags, e *env) func(context.Context) error {
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
		return func(ctx context.Context) error {
			stdin, stdout, stderr := e.stdin, e.stdout, e.stderr
			if *cache == "" || len(ups) == 0 {
				return usageErr("--cache and at least one --upstream are required")
			}
			tlsConfig, err := tf.config()
			if err != nil {
				return err
			}
			var capBytes int64
			if *maxSize != "" {
				if capBytes, err = parseSize(*maxSize); err != nil {
					return usageErr("--max-size: %v", err)
				}
			}
			if err := bindCredentials(ups, *username, *passwordStdin, *credsFor, stdin); err != nil {
				return err
			}
			for ns, up := range ups {
				up.NoRanges = *noRanges
				ups[ns] = up
			}
			logger, err := mirrorLogger(stderr, *logFormat, *quiet, e.verbose)
			if err != nil {
				return err
			}
			var auth *registry.ServerAuth
			var users *htpasswd
			if *usersFile != "" {
				if users, err = loadHtpasswd(*usersFile, func(msg string) { logger.Warn(msg) }); err != nil {
					return usageErr("--htpasswd: %v", err)
				}
				auth = &registry.ServerAuth{Service: "ocipull-mirror", Verify: users.verify,
					Users: map[string]registry.ServerUser{"*": {Repositories: []string{"*"}}}}
				for user, repos := range grants {
					auth.Users[user] = registry.ServerUser{Repositories: repos}
				}
				if *anonymous != "" {
					auth.Anonymous = strings.Split(*anonymous, ",")
				}
			} else if len(grants) > 0 || *anonymous != "" {
				return usageErr("--grant and --anonymous need --htpasswd")
			}
			m, err := mirror.Open(*cache, mirror.Config{Upstreams: ups, TagTTL: *ttl, MaxSize: capBytes, Log: logger, Auth: auth,
				MetricsOnAdminOnly: *adminAddr != "", PrefetchReferrers: *prefetch})
			if err != nil {
				return err
			}
			defer m.Close()
			if *adminAddr != "" {
				stop, err := serveAdmin(*adminAddr, m, stdout)
				if err != nil {
					return err
				}
				defer stop()
			}
			ln, url, err := listen(*addr, tlsConfig)
			if err != nil {
				return err
			}
			// SIGHUP (a closed terminal, or an operator asking for a
			// reload) must not end the cache: it re-reads the users file.
			stopHangup := onHangup(func() {
				if users == nil {
					logger.Info("SIGHUP: nothing to reload")
					return
				}
				if err := users.reload(); err != nil {
					logger.Warn("SIGHUP: keeping the users read before", "cause", safe(err.Error()))
					return
				}
				logger.Info("SIGHUP: users re-read", "file", safe(*usersFile))
			})
			defer stopHangup()
			return serveUntilDoneWithin(ctx, ln, m, *drain, func() {
				fmt.Fprintf(stdout, "mirroring %s into %s at %s\n", ups, *cache, url)
			})
		}
	},
}

// bindCredentials gives --username and --password-stdin to one upstream:
// the one --credentials-for names, else the only one, else the default
// (no NS=); every other upstream reads Docker's config.json for its own
// host. A password never goes to an upstream it was not given for.
func bindCredentials(ups upstreamFlags, username string, passwordStdin bool, credsFor string, stdin io.Reader) error {
	docker := registry.DockerConfig("")
	for ns, up := range ups {
		up.Credentials = docker
		ups[ns] = up
	}
	if username == "" && !passwordStdin {
		if credsFor != "" {
			return usageErr("--credentials-for needs --username and --password-stdin")
		}
		return nil
	}
	creds, err := credentialsFrom(username, passwordStdin, stdin)
	if err != nil {
		return err
	}
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
		return usageErr("--username: name the upstream it is for with --credentials-for NS (one of %s)", ups)
	}
	up.Credentials = creds
	ups[key] = up
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
func serveAdmin(addr string, m *mirror.Cache, stdout io.Writer) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", m.Admin())
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
