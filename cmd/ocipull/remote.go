package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ocipull/registry"
)

// remoteFlags are the flags of commands that talk to a registry.
type remoteFlags struct {
	plainHTTP     *bool
	username      *string
	passwordStdin *bool
	timeout       *time.Duration
	mirrors       *[]string
	caFile        *string
	certDir       *string
	insecure      *bool
}

// defaultMetadataTimeout bounds the metadata operations of a command
// (manifests, tags, the catalog), retries included, so that a registry
// that drips its answers cannot hold the command for hours. Blob
// downloads are bounded by the stall rule instead, not by a deadline.
const defaultMetadataTimeout = 2 * time.Minute

func addRemoteFlags(f *flags) *remoteFlags {
	return &remoteFlags{
		plainHTTP:     f.Bool("plain-http", "", "use plain HTTP, credentials included (loopback hosts fall back to it when they do not speak TLS)"),
		username:      f.String("username", "u", "", "the `USER` to log in to the registry as (default: Docker's config.json; mirrors never get it)"),
		passwordStdin: f.Bool("password-stdin", "", "read the password from standard input"),
		timeout:       f.Duration("timeout", "", defaultMetadataTimeout, "give up on manifests, tags and the catalog after this long, retries included (0: no limit)"),
		mirrors:       f.List("mirror", "", "try this mirror (`URL`, as https://mirror.example[:port][/prefix]) before the registry (repeatable)"),
		caFile:        f.String("ca-file", "", "", "trust this PEM CA certificate `FILE` for the registry and --mirror hosts, beside the system's"),
		certDir:       f.String("cert-dir", "", "", "a certs.d root: `DIR`/HOST[:PORT]/ holds ca.crt, client *.cert/*.key or a containerd hosts.toml (searched before /etc/containerd/certs.d, /etc/docker/certs.d, /etc/containers/certs.d)"),
		insecure:      f.Bool("insecure", "", "do not verify the TLS certificates of the registry and --mirror hosts (a warning says so)"),
	}
}

// metadataContext is ctx bounded by --timeout (when positive).
func (r *remoteFlags) metadataContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if *r.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, *r.timeout)
}

// parseRef reads a reference argument; an invalid one is a usage error.
func parseRef(s string) (registry.Reference, error) {
	ref, err := registry.ParseReference(s)
	if err != nil {
		return registry.Reference{}, usageErr("%v", err)
	}
	return ref, nil
}

// client makes the client for a parsed reference: credentials, mirrors,
// certificates and the logging --verbose asks for.
func (r *remoteFlags) client(ref registry.Reference, e *env) (*registry.Client, error) {
	c := ref.Client()
	if *r.plainHTTP {
		// Asking for plain HTTP to this host is also the opt-in to send it
		// credentials that way.
		c.Registry().Scheme = "http"
		c.Registry().AllowBasicOverHTTP = true
	}
	creds, err := credentialsFrom(*r.username, *r.passwordStdin, e.stdin)
	if err != nil {
		return nil, err
	}
	if *r.username != "" {
		// StaticCredentials never reach a mirror; this lets a mirror
		// still log in with Docker's config.json entry for itself.
		creds = onlyFor(c.Registry().Host, creds, registry.DockerConfig(""))
	}
	c.Registry().Credentials = creds
	roots := registry.DefaultHostsDirs()
	if *r.certDir != "" {
		if st, err := os.Stat(*r.certDir); err != nil || !st.IsDir() {
			return nil, usageErr("--cert-dir %s: not a directory", *r.certDir)
		}
		roots = append([]string{*r.certDir}, roots...)
	}
	if err := c.Registry().LoadHostsDir(roots...); err != nil {
		return nil, err
	}
	for _, m := range *r.mirrors {
		ep, err := registry.ParseEndpoint(m)
		if err != nil {
			return nil, usageErr("--mirror: %v", err)
		}
		c.Registry().Mirrors = append(c.Registry().Mirrors, ep)
	}
	if err := r.applyTLS(c, e); err != nil {
		return nil, err
	}
	e.observe(c)
	e.clients = append(e.clients, c)
	return c, nil
}

// onlyFor supplies creds for host and other's credentials for every
// other host.
func onlyFor(host string, creds, other registry.CredentialSource) registry.CredentialSource {
	return registry.CredentialFunc(func(ctx context.Context, h string) (registry.Credential, error) {
		if h == host {
			return creds.Credential(ctx, h)
		}
		return other.Credential(ctx, h)
	})
}

// applyTLS adds --ca-file and --insecure to the registry's and the
// command-line mirrors' TLS configuration.
func (r *remoteFlags) applyTLS(c *registry.Client, e *env) error {
	if *r.caFile == "" && !*r.insecure {
		return nil
	}
	var extra []byte
	if *r.caFile != "" {
		b, err := os.ReadFile(*r.caFile)
		if err != nil {
			return fmt.Errorf("--ca-file: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return usageErr("--ca-file %s: no PEM certificate in it", *r.caFile)
		}
		extra = b
	}
	adjust := func(cfg *tls.Config) *tls.Config {
		if cfg == nil {
			cfg = &tls.Config{}
		} else {
			cfg = cfg.Clone()
		}
		if extra != nil {
			pool, err := x509.SystemCertPool()
			if cfg.RootCAs != nil {
				pool, err = cfg.RootCAs.Clone(), nil // not the pool it shares with others
			}
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			pool.AppendCertsFromPEM(extra)
			cfg.RootCAs = pool
		}
		if *r.insecure {
			cfg.InsecureSkipVerify = true
		}
		return cfg
	}
	c.Registry().TLSConfig = adjust(c.Registry().TLSConfig)
	hosts := []string{c.Registry().Host}
	for i := range c.Registry().Mirrors {
		c.Registry().Mirrors[i].TLSConfig = adjust(c.Registry().Mirrors[i].TLSConfig)
		hosts = append(hosts, c.Registry().Mirrors[i].Host)
	}
	if *r.insecure {
		fmt.Fprintf(e.stderr, "warning: --insecure: the TLS certificates of %s are not verified; anyone on the network path can read and change what is pulled (digests are still verified)\n", strings.Join(hosts, ", "))
	}
	return nil
}

// observe makes the client's retries visible (on a terminal or with
// --verbose) and, with --verbose, logs every request and the pull
// allowance.
func (e *env) observe(c *registry.Client) {
	var mu sync.Mutex
	logf := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		if live := e.live.Load(); live != nil {
			// Above the live progress block, which is redrawn below.
			live.note(fmt.Sprintf(format, a...))
			return
		}
		fmt.Fprintf(e.stderr, format, a...)
	}
	if e.verbose || isTerminal(e.stderr) {
		c.Registry().RetryNotify = func(err error, wait time.Duration) {
			logf("retrying in %s after: %s\n", wait.Round(10*time.Millisecond), oneLine(err.Error()))
		}
	}
	if e.verbose {
		c.Registry().Trace = func(rt registry.RequestTrace) {
			if rt.Err != nil {
				logf("%s %s: %s (%s)\n", rt.Method, safe(rt.URL), oneLine(rt.Err.Error()), rt.Duration.Round(time.Millisecond))
				return
			}
			logf("%s %s %d %s %s\n", rt.Method, safe(rt.URL), rt.Status, humanBytes(rt.Bytes), rt.Duration.Round(time.Millisecond))
		}
	}
}

// reportAllowance prints, with --verbose, the pull allowance the
// registries of the command's clients stated, after the command ran
// (whether it succeeded or not).
func (e *env) reportAllowance() {
	if !e.verbose {
		return
	}
	for _, c := range e.clients {
		if rl, ok := c.Registry().RateLimit(); ok {
			fmt.Fprintf(e.stderr, "pull allowance at %s: %s\n", safe(rl.Host), rl)
		}
	}
}
