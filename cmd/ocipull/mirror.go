package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ocipull/registry"
)

// upstreamFlags collects repeated --upstream [NS=]URL flags.
type upstreamFlags map[string]registry.Upstream

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
	u[ns] = registry.Upstream{URL: strings.TrimSuffix(url, "/")}
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
		username := f.String("username", "u", "", "the upstream `USER` (default: Docker's config.json, per upstream host)")
		passwordStdin := f.Bool("password-stdin", "", "read the upstream password from standard input")
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
			creds, err := credentialsFrom(*username, *passwordStdin, stdin)
			if err != nil {
				return err
			}
			for ns, up := range ups {
				up.Credentials = creds
				ups[ns] = up
			}
			m, err := registry.NewMirror(*cache, ups)
			if err != nil {
				return err
			}
			defer m.Close()
			m.TagTTL, m.MaxSize = *ttl, capBytes
			if !*quiet {
				var mu sync.Mutex
				m.Log = func(line string) {
					mu.Lock()
					fmt.Fprintf(stderr, "%s %s\n", time.Now().UTC().Format(time.RFC3339), line)
					mu.Unlock()
				}
			}
			ln, url, err := listen(*addr, tlsConfig)
			if err != nil {
				return err
			}
			return serveUntilDone(ctx, ln, m, func() {
				fmt.Fprintf(stdout, "mirroring %s into %s at %s\n", ups, *cache, url)
			})
		}
	},
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
		return registry.StaticCredentials(username, strings.TrimRight(line, "\r\n")), nil
	case username != "":
		return nil, usageErr("--username needs --password-stdin")
	}
	return registry.DockerConfig(""), nil
}
