package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

var serveCommand = &command{
	name: "serve", args: "DIR", min: 1, max: 1,
	summary:  "serve an OCI layout as a read-only registry",
	examples: []string{"ocipull serve --addr 127.0.0.1:5000 --repo demo/sample ./app"},
	define: func(f *flags, e *env) func(context.Context) error {
		addr := f.String("addr", "", "127.0.0.1:5000", "`HOST:PORT` to listen on")
		repo := f.String("repo", "", "image", "the repository `NAME` to serve the layout as")
		tf := addTLSFlags(f)
		quiet := f.Bool("quiet", "q", "do not log one line per request on stderr")
		return func(ctx context.Context) error {
			dir := e.args[0]
			tlsConfig, err := tf.config()
			if err != nil {
				return err
			}
			if !validRepository(*repo) {
				return usageErr("--repo %q is not a valid repository name", safe(*repo))
			}
			srv, n, err := layoutServer(ctx, dir, *repo)
			if err != nil {
				return err
			}
			if !*quiet {
				srv.OnRequest = requestLogger(e.stderr)
			}
			ln, url, err := listen(*addr, tlsConfig)
			if err != nil {
				return err
			}
			return serveUntilDone(ctx, ln, srv, func() {
				fmt.Fprintf(e.stdout, "serving %s (%s) at %s/v2/%s\n", dir, plural(n, "manifest", "manifests"), url, *repo)
			})
		}
	},
}

// requestLogger writes one line per request a server answered: time,
// method, path, status, bytes, duration and user.
func requestLogger(w io.Writer) func(registry.RecordedRequest) {
	var mu sync.Mutex
	return func(r registry.RecordedRequest) {
		user := r.User
		if user == "" {
			user = "-"
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "%s %s %s %d %d %s %s\n", time.Now().UTC().Format(time.RFC3339), r.Method, safe(r.Path), r.Status, r.Bytes,
			r.Duration.Round(time.Microsecond), safe(user))
	}
}

// layoutServer adds every manifest the layout's index.json lists to a new
// server, under its ref name when that is a valid tag. Blobs stream from
// disk with Range support when requested.
func layoutServer(ctx context.Context, dir, repo string) (*registry.Server, int, error) {
	l, err := oci.OpenLayout(dir)
	if err != nil {
		return nil, 0, err
	}
	idx, err := l.Index()
	if err != nil {
		return nil, 0, err
	}
	srv := registry.NewServer()
	for _, d := range idx.Manifests {
		tag := layoutTag(d.Annotations[v1.AnnotationRefName])
		d.Annotations = nil
		ref, err := oci.LoadRef(ctx, l, d)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", dir, err)
		}
		if err := srv.AddRef(repo, tag, ref); err != nil {
			return nil, 0, fmt.Errorf("%s: %w", dir, err)
		}
	}
	return srv, len(idx.Manifests), nil
}

// tlsFlags are the serving commands' --tls-cert and --tls-key.
type tlsFlags struct{ cert, key *string }

func addTLSFlags(f *flags) tlsFlags {
	return tlsFlags{
		cert: f.String("tls-cert", "", "", "serve HTTPS with this PEM certificate (chain) `FILE`; needs --tls-key"),
		key:  f.String("tls-key", "", "", "the PEM private key `FILE` of --tls-cert"),
	}
}

// config loads the pair: nil for plain HTTP, a usage error for half a pair.
func (t tlsFlags) config() (*tls.Config, error) {
	if (*t.cert == "") != (*t.key == "") {
		return nil, usageErr("--tls-cert and --tls-key go together")
	}
	if *t.cert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(*t.cert, *t.key)
	if err != nil {
		return nil, err
	}
	// HTTP/2 is offered (many clients pull many blobs over one
	// connection), HTTP/1.1 kept.
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}, nil
}

// listen listens on addr, through TLS when cfg is not nil, and returns the
// base URL clients use.
func listen(addr string, cfg *tls.Config) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	if cfg == nil {
		return ln, "http://" + ln.Addr().String(), nil
	}
	return tls.NewListener(ln, cfg), "https://" + ln.Addr().String(), nil
}

// serveUntilDone serves h on ln until ctx is done, then shuts down cleanly.
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler, ready func()) error {
	return serveUntilDoneWithin(ctx, ln, h, 5*time.Second, ready)
}

// serveUntilDoneWithin is serveUntilDone with drain as the time requests
// in progress get to finish once ctx ends.
func serveUntilDoneWithin(ctx context.Context, ln net.Listener, h http.Handler, drain time.Duration, ready func()) error {
	// Slow or idle clients cannot hold connections: headers within 10 s
	// (at most 64 KiB of them), idle keep-alive connections closed after
	// 2 minutes.
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	ready()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// layoutTag turns a layout's ref name into a tag: the name itself when it
// is a tag ("v1"), the tag of a full reference ("ghcr.io/org/app:v1", as
// other tools write them), or "" when there is none.
func layoutTag(name string) string {
	if validTag(name) {
		return name
	}
	if strings.Contains(name, "@") {
		return ""
	}
	if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.Contains(name[i+1:], "/") && validTag(name[i+1:]) {
		return name[i+1:]
	}
	return ""
}

// validRepository and validTag apply the reference grammar through
// registry.ParseReference, the one place it lives.
func validRepository(repo string) bool {
	r, err := registry.ParseReference("localhost/" + repo)
	return err == nil && r.Repository == repo && r.Digest == ""
}

func validTag(tag string) bool {
	r, err := registry.ParseReference("localhost/x:" + tag)
	return err == nil && r.Tag == tag && r.Digest == ""
}
