// Command ocipull pulls images from OCI registries into OCI image layouts
// or docker-archive tarballs, reads manifests, configs, digests, blobs,
// tags, catalogs and referrers from registries and layouts, serves layouts
// as a read-only registry, and runs a pull-through cache. Run
// "ocipull demo" for a self-contained tour that needs no network, and
// "ocipull help" for the commands.
//
// Every command is a thin layer over the library
// (github.com/ocipull/registry); pull, for example, is:
//
//	ref, _ := registry.ParseReference("ghcr.io/org/app:v1")
//	c := ref.Client()
//	c.Credentials = registry.DockerConfig("")
//	img, _ := c.Read(ctx, ref.TagOrDigest())          // manifest read and verified
//	layout, _ := oci.CreateLayout("app")
//	err := layout.Write(ctx, ref.Tag, img, &oci.WriteOptions{ImageName: ref.String()})
//
// and manifest, config, digest and blob are Client.Read, Image.ReadConfig,
// Client.Resolve and Client.OpenBlob. Exit status: 0 success, 1 failure,
// 2 usage (unknown flags, bad flag values, an invalid reference), 130 and
// 143 when interrupted by SIGINT and SIGTERM.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/internal/safetext"
)

// commands are the subcommands, in the order help lists them.
// (Set in init: completion lists the commands, so the table cannot refer
// to itself in its initializer.)
var commands []*command

func init() {
	commands = []*command{
		pullCommand, inspectCommand, manifestCommand, configCommand, digestCommand, blobCommand, exportCommand, unpackCommand, lockCommand,
		tagsCommand, catalogCommand, referrersCommand, serveCommand, mirrorCommand, demoCommand, completionCommand,
	}
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		cancel(interrupted{s})
		// A second signal ends the process at once.
		<-sigs
		os.Exit(exitCode(s))
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	os.Exit(code)
}

// interrupted is the cause of a context cancelled by a signal.
type interrupted struct{ sig os.Signal }

func (i interrupted) Error() string { return "interrupted by " + i.sig.String() }

func exitCode(s os.Signal) int {
	if s == syscall.SIGTERM {
		return 143
	}
	return 130
}

// errUsage marks errors that are the user's invocation, exit status 2.
var errUsage = errors.New("usage")

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
}

func topUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: ocipull <command> [flags] [arguments]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nflags of every command: -v, --verbose (log each request on stderr), -h, --help\n")
	fmt.Fprintf(w, "Run \"ocipull help COMMAND\" or \"ocipull COMMAND --help\" for a command's flags and examples.\n")
	fmt.Fprintf(w, "Run \"ocipull --version\" for the version.\n")
}

// run is the whole command: it returns the exit status and writes only to
// stdout and stderr.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		topUsage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		if len(args) > 1 {
			c := lookup(args[1])
			if c == nil {
				fmt.Fprintf(stderr, "ocipull help: unknown command %q\n", safe(args[1]))
				return 2
			}
			f, _ := c.flags(&env{stdin: stdin, stdout: stdout, stderr: stderr, cmd: c.name})
			f.usage(stdout, c)
			return 0
		}
		topUsage(stdout)
		return 0
	case "--version", "version":
		fmt.Fprintln(stdout, version())
		return 0
	}
	args = commandFirst(args)
	c := lookup(args[0])
	if c == nil {
		if near := nearestCommand(args[0]); near != "" {
			fmt.Fprintf(stderr, "ocipull: unknown command %q; did you mean %q? (run \"ocipull help\" for the commands)\n", safe(args[0]), near)
			return 2
		}
		fmt.Fprintf(stderr, "ocipull: unknown command %q (run \"ocipull help\" for the commands)\n", safe(args[0]))
		return 2
	}
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, cmd: c.name}
	f, body := c.flags(e)
	pos, err := f.parse(args[1:])
	if err == nil {
		e.args = pos
		err = c.checkArgs(len(pos))
	}
	if errors.Is(err, errHelp) {
		f.usage(stdout, c)
		return 0
	}
	if err == nil {
		err = body(ctx)
	}
	return report(ctx, c.name, err, stderr)
}

// nearestCommand is the command name within two edits of s (a typo such
// as "pul"), or "" when none is.
func nearestCommand(s string) string {
	best, bestD := "", 3
	for _, c := range commands {
		if d := editDistance(s, c.name); d < bestD {
			best, bestD = c.name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (short strings).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// commandFirst lets flags come before the command too, as the README
// says they go anywhere: "ocipull -v digest REF" is "ocipull digest -v
// REF". The command is the first argument that names one.
func commandFirst(args []string) []string {
	if !strings.HasPrefix(args[0], "-") {
		return args
	}
	for i, a := range args {
		if lookup(a) != nil {
			out := append([]string{a}, args[:i]...)
			return append(out, args[i+1:]...)
		}
	}
	return args
}

// flags makes the command's flag set, with the flags of every command.
func (c *command) flags(e *env) (*flags, func(context.Context) error) {
	f := newFlagSet(c.name)
	body := c.define(f, e)
	verbose := f.Bool("verbose", "v", "log each HTTP request and retry on stderr")
	return f, func(ctx context.Context) error {
		e.verbose = *verbose
		defer e.reportAllowance()
		return body(ctx)
	}
}

func (c *command) checkArgs(n int) error {
	if n >= c.min && (c.max < 0 || n <= c.max) {
		return nil
	}
	want := c.args
	if want == "" {
		return usageErr("takes no arguments, got %s", plural(n, "argument", "arguments"))
	}
	return usageErr("want %s, got %s", want, plural(n, "argument", "arguments"))
}

// report turns a command's error into its message and exit status.
func report(ctx context.Context, name string, err error, stderr io.Writer) int {
	var intr interrupted
	switch {
	case err == nil:
		return 0
	case errors.As(context.Cause(ctx), &intr):
		msg := "interrupted"
		if name == "pull" || name == "blob" {
			msg += "; run the same command to resume (finished blobs are kept, a partial one continues)"
		}
		fmt.Fprintf(stderr, "ocipull %s: %s\n", name, msg)
		return exitCode(intr.sig)
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "ocipull %s: %s\nRun \"ocipull %s --help\" for usage.\n", name, oneLine(strings.TrimPrefix(err.Error(), "usage: ")), name)
		return 2
	case errors.Is(err, registry.ErrInvalidReference):
		fmt.Fprintf(stderr, "ocipull %s: %s\n", name, oneLine(err.Error()))
		return 2
	}
	fmt.Fprintf(stderr, "ocipull %s: %s%s\n", name, oneLine(err.Error()), hint(name, err))
	return 1
}

// modulePath is the library's module, whose version the command reports.
const modulePath = "github.com/ocipull/registry"

// version is the module version and VCS revision from the build info.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "ocipull (no build information)"
	}
	// Built in this module, Main is ours; built from another module
	// (vendored, or with a replace), ours is among the dependencies.
	m := &bi.Main
	for _, d := range bi.Deps {
		if bi.Main.Path != modulePath && d.Path == modulePath {
			m = d
		}
	}
	v := m.Version
	switch {
	case m.Replace != nil:
		v = "(replaced by " + m.Replace.Path + ")"
	case v == "" || v == "(devel)":
		v = "(devel)"
	}
	s := "ocipull " + v
	var rev, modified, when string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.modified":
			modified = kv.Value
		case "vcs.time":
			when = kv.Value
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " revision " + rev
		if modified == "true" {
			s += " (modified)"
		}
		if when != "" {
			s += " " + when
		}
	}
	return s + " " + bi.GoVersion
}

// hint suggests what to do about the commonest failures.
func hint(cmd string, err error) string {
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
		return " (the registry is rate-limiting this client: wait for the reset, or log in for a higher limit)"
	case errors.Is(err, registry.ErrNameUnknown):
		return " (the registry does not know this repository: check the repository name)"
	case errors.Is(err, registry.ErrManifestUnknown) && cmd != "tags" && (strings.Contains(msg, "@sha") || strings.Contains(msg, "/manifests/sha")):
		return " (no manifest with this digest in the repository: check the digest)"
	case errors.Is(err, registry.ErrManifestUnknown) && cmd != "tags":
		return " (the repository has no such tag: \"ocipull tags REPOSITORY\" lists them)"
	}
	var unknownCA x509.UnknownAuthorityError
	var wrongHost x509.HostnameError
	switch {
	case errors.As(err, &unknownCA):
		return " (the registry's certificate is not signed by a trusted authority: pass its CA with --ca-file (or SSL_CERT_FILE), or put it in --cert-dir DIR/HOST/ca.crt)"
	case errors.As(err, &wrongHost):
		return " (the registry's certificate is for another name)"
	}
	return ""
}

// oneLine puts an error on one line, sanitised: no registry-controlled
// string reaches the terminal raw.
func oneLine(s string) string { return safetext.String(strings.Join(strings.Fields(s), " "), 4096) }

// safe sanitises a registry-controlled string for the terminal.
func safe(s string) string { return safetext.String(s, 256) }
