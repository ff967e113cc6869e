// Command ocipull pulls images from OCI registries into OCI image layouts,
// serves layouts as a read-only registry, and inspects references. Run
// "ocipull demo" for a self-contained tour that needs no network.
package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/internal/safetext"
)

const usage = `usage: ocipull <command> [flags] [arguments]

commands:
  pull [flags] REFERENCE DIR   pull an image or index into an OCI layout at DIR
  serve [flags] DIR            serve an OCI layout as a read-only registry
  inspect [flags] REFERENCE    show a manifest: digest, media type, platforms, layers
  tags REPOSITORY              list every tag of a repository
  mirror [flags]               run a pull-through cache of one or more registries
  demo                         pull a generated image from a local authenticating registry

Run "ocipull <command> --help" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks errors that are the user's invocation, exit status 2.
var errUsage = errors.New("usage")

// run is the whole command: it returns the exit status (0 ok, 1 failure,
// 2 usage) and writes only to stdout and stderr.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string, io.Reader, io.Writer, io.Writer) error{
		"pull": cmdPull, "serve": cmdServe, "inspect": cmdInspect, "tags": cmdTags, "demo": cmdDemo, "mirror": cmdMirror,
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "ocipull: unknown command %q\n%s", name, usage)
		return 2
	}
	err := cmd(ctx, args[1:], stdin, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "ocipull %s: %v\n", name, strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	default:
		fmt.Fprintf(stderr, "ocipull: %s%s\n", oneLine(err.Error()), hint(err))
		return 1
	}
}

// hint suggests what to do about the commonest failures.
func hint(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, registry.ErrUnauthorized):
		return " (log in with --username and --password-stdin, or with docker login)"
	case errors.Is(err, registry.ErrDenied):
		return " (these credentials may not pull this repository)"
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return " (the registry speaks plain HTTP: add --plain-http)"
	case strings.Contains(msg, "no space left on device"):
		return " (free some disk space and run the same command again: finished blobs are kept)"
	case errors.Is(err, registry.ErrStalled):
		return " (the registry stopped sending: run the same command again, finished blobs are kept and a partial one resumes)"
	case errors.Is(err, registry.ErrTooManyRequests):
		return " (the registry is rate-limiting this client: wait, or log in for a higher limit)"
	case errors.Is(err, registry.ErrManifestUnknown), errors.Is(err, registry.ErrNameUnknown):
		return " (check the repository and tag: \"ocipull tags REPOSITORY\" lists its tags)"
	}
	var unknownCA x509.UnknownAuthorityError
	var wrongHost x509.HostnameError
	switch {
	case errors.As(err, &unknownCA):
		return " (the registry's certificate is not signed by a trusted authority: point SSL_CERT_FILE at its CA certificate)"
	case errors.As(err, &wrongHost):
		return " (the registry's certificate is for another name)"
	}
	return ""
}

// oneLine puts an error on one line, sanitised: no registry-controlled
// string reaches the terminal raw.
func oneLine(s string) string { return safetext.String(strings.Join(strings.Fields(s), " "), 4096) }

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
}

// newFlags makes a flag set whose errors become usage errors.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ocipull %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErr("%v", err)
	}
	return nil
}

// remoteFlags are the flags of commands that talk to a registry.
type remoteFlags struct {
	plainHTTP     bool
	username      string
	passwordStdin bool
	timeout       time.Duration
}

// defaultMetadataTimeout bounds the metadata operations of a command
// (manifests, tags, the catalog), retries included, so that a registry
// that drips its answers cannot hold the command for hours. Blob
// downloads are bounded by the stall rule instead, not by a deadline.
const defaultMetadataTimeout = 2 * time.Minute

// metadataContext is ctx bounded by --timeout (when positive).
func (r *remoteFlags) metadataContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if r.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, r.timeout)
}

func (r *remoteFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&r.plainHTTP, "plain-http", false, "use plain HTTP, credentials included (loopback hosts fall back to it when they do not speak TLS)")
	fs.StringVar(&r.username, "username", "", "user name (default: Docker's config.json)")
	fs.BoolVar(&r.passwordStdin, "password-stdin", false, "read the password from standard input")
	fs.DurationVar(&r.timeout, "timeout", defaultMetadataTimeout, "give up on manifests, tags and the catalog after this long, retries included (0: no limit)")
}

// parse parses the flags, checks that the positional arguments are those
// named in want (as in "REFERENCE DIR"), and makes the client for the first.
func (r *remoteFlags) parse(fs *flag.FlagSet, args []string, stdin io.Reader, want string) (registry.Reference, *registry.Client, error) {
	if err := parseFlags(fs, args); err != nil {
		return registry.Reference{}, nil, err
	}
	if n := len(strings.Fields(want)); fs.NArg() != n {
		return registry.Reference{}, nil, usageErr("want %s, got %d arguments", want, fs.NArg())
	}
	ref, err := registry.ParseReference(fs.Arg(0))
	if err != nil {
		return registry.Reference{}, nil, err
	}
	c, err := r.client(ref, stdin)
	return ref, c, err
}

// client makes the client for a parsed reference.
func (r *remoteFlags) client(ref registry.Reference, stdin io.Reader) (*registry.Client, error) {
	c := ref.Client()
	if r.plainHTTP {
		// Asking for plain HTTP to this host is also the opt-in to send it
		// credentials that way.
		c.Scheme = "http"
		c.AllowBasicOverHTTP = true
	}
	switch {
	case r.passwordStdin:
		if r.username == "" {
			return nil, usageErr("--password-stdin needs --username")
		}
		line, err := bufio.NewReader(io.LimitReader(stdin, 64<<10)).ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading the password from standard input: %w", err)
		}
		c.Credentials = registry.StaticCredentials(r.username, strings.TrimRight(line, "\r\n"))
	case r.username != "":
		return nil, usageErr("--username needs --password-stdin")
	default:
		c.Credentials = registry.DockerConfig("")
	}
	return c, nil
}
