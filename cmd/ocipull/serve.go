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
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

func cmdServe(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "[flags] DIR", stderr)
	addr := fs.String("addr", "127.0.0.1:5000", "address to listen on")
	repo := fs.String("repo", "image", "repository name to serve the layout as")
	certFile := fs.String("tls-cert", "", "serve HTTPS with this PEM certificate (chain) file; needs --tls-key")
	keyFile := fs.String("tls-key", "", "the PEM private key of --tls-cert")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("want DIR, got %d arguments", fs.NArg())
	}
	if (*certFile == "") != (*keyFile == "") {
		return usageErr("--tls-cert and --tls-key go together")
	}
	var tlsConfig *tls.Config
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if !validRepository(*repo) {
		return usageErr("--repo %q is not a valid repository name", *repo)
	}
	srv, n, err := layoutServer(ctx, fs.Arg(0), *repo)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	url := "http://" + ln.Addr().String()
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
		url = "https://" + ln.Addr().String()
	}
	return serveUntilDone(ctx, ln, srv, func() {
		fmt.Fprintf(stdout, "serving %s (%d manifests) at %s/v2/%s\n", fs.Arg(0), n, url, *repo)
	})
}

// layoutServer adds every manifest the layout's index.json lists to a new
// server, under its ref name when that is a valid tag. Blobs stream from
// disk with Range support when requested.
func layoutServer(ctx context.Context, dir, repo string) (*registry.Server, int, error) {
	l, err := oci.OpenLayout(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("serve: %w", err)
	}
	idx, err := l.Index()
	if err != nil {
		return nil, 0, fmt.Errorf("serve: %w", err)
	}
	srv := registry.NewServer()
	for _, d := range idx.Manifests {
		tag := layoutTag(d.Annotations[v1.AnnotationRefName])
		d.Annotations = nil
		ref, err := oci.LoadRef(ctx, l, d)
		if err != nil {
			return nil, 0, fmt.Errorf("serve: %s: %w", dir, err)
		}
		if err := srv.AddRef(repo, tag, ref); err != nil {
			return nil, 0, fmt.Errorf("serve: %s: %w", dir, err)
		}
	}
	return srv, len(idx.Manifests), nil
}

// serveUntilDone serves h on ln until ctx is done, then shuts down cleanly.
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler, ready func()) error {
	// Slow or idle clients cannot hold connections: headers within 10 s,
	// idle keep-alive connections closed after 2 minutes.
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	ready()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("serve: shutdown: %w", err)
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
