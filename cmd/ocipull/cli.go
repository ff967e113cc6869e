package main

import (
	"context"

	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ocipull/registry"
)

// command is one subcommand: its synopsis, the flags define registers
// (returning the body to run once they are parsed), and examples.
type command struct {
	name     string
	args     string // the positional arguments, as in "REFERENCE DIR"
	summary  string
	examples []string
	// nargs checks the number of positional arguments: min, max (-1: any).
	min, max int
	define   func(f *flags, e *env) func(ctx context.Context) error
}

// env is what a command runs with.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	args           []string // the positional arguments
	verbose        bool
	cmd            string
	clients        []*registry.Client // made for the command, for the allowance report
	// live is the progress block being drawn on the terminal, if any:
	// log lines then go above it instead of through it.
	live atomic.Pointer[progress]
}

// flags is a command's flag set: long names (--jobs), one-letter
// aliases (-j), and flags anywhere among the arguments (as crane and oras
// users type them); "--" ends the flags.
type flags struct {
	fs    *flag.FlagSet
	short map[string]string // long name → its one-letter alias
	long  map[string]string // alias → long name
	order []string
}

func newFlagSet(name string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flags{fs: fs, short: map[string]string{}, long: map[string]string{}}
}

// Var defines a flag with an optional one-letter alias.
func (f *flags) Var(v flag.Value, long, short, usage string) {
	f.fs.Var(v, long, usage)
	f.order = append(f.order, long)
	if short != "" {
		f.fs.Var(v, short, usage)
		f.short[long], f.long[short] = short, long
	}
}

func (f *flags) String(long, short, value, usage string) *string {
	p := new(string)
	*p = value
	f.Var(&stringValue{p}, long, short, usage)
	return p
}

func (f *flags) Bool(long, short string, usage string) *bool {
	p := new(bool)
	f.Var(&boolValue{p}, long, short, usage)
	return p
}

func (f *flags) Int(long, short string, value int, usage string) *int {
	p := new(int)
	*p = value
	f.Var(&intValue{p}, long, short, usage)
	return p
}

func (f *flags) Duration(long, short string, value time.Duration, usage string) *time.Duration {
	p := new(time.Duration)
	*p = value
	f.Var(&durationValue{p}, long, short, usage)
	return p
}

// List defines a repeatable flag collecting its values.
func (f *flags) List(long, short, usage string) *[]string {
	p := new([]string)
	f.Var(&listValue{p}, long, short, usage)
	return p
}

// isSet reports whether the flag long (or its alias) was given.
func (f *flags) isSet(long string) bool {
	set := false
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name == long || fl.Name == f.short[long] {
			set = true
		}
	})
	return set
}

// errHelp asks for the command's help.
var errHelp = flag.ErrHelp

// parse reads flags anywhere in args and returns the positional
// arguments. -h and --help are errHelp.
func (f *flags) parse(args []string) ([]string, error) {
	var flagArgs, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if name == "h" || name == "help" {
			return nil, errHelp
		}
		fl := f.fs.Lookup(name)
		if fl == nil {
			return nil, usageErr("unknown flag %s", safe(strings.SplitN(a, "=", 2)[0]))
		}
		flagArgs = append(flagArgs, a)
		if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && b.IsBoolFlag()) {
			if i+1 >= len(args) {
				return nil, usageErr("flag %s needs a value", a)
			}
			flagArgs = append(flagArgs, args[i+1])
			i++
		}
	}
	if err := f.fs.Parse(flagArgs); err != nil {
		return nil, usageErr("%s", strings.Replace(err.Error(), " for flag -", " for --", 1))
	}
	return pos, nil
}

// usage writes a command's help.
func (f *flags) usage(w io.Writer, c *command) {
	fmt.Fprintf(w, "usage: ocipull %s [flags] %s\n\n%s\n", c.name, c.args, c.summary)
	if len(f.order) > 0 {
		fmt.Fprintf(w, "\nflags:\n")
		type row struct{ names, text string }
		var rows []row
		width := 0
		for _, long := range f.order {
			fl := f.fs.Lookup(long)
			names := "    --" + long
			if s := f.short[long]; s != "" {
				names = "-" + s + ", --" + long
			}
			text := fl.Usage
			kind := flagKind(fl)
			// A `WORD` in the usage names the value, as with the flag package.
			if i := strings.IndexByte(text, '`'); i >= 0 {
				if j := strings.IndexByte(text[i+1:], '`'); j >= 0 {
					kind = text[i+1 : i+1+j]
					text = text[:i] + kind + text[i+1+j+1:]
				}
			}
			if kind != "" {
				names += " " + kind
			}
			if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "0" && fl.DefValue != "[]" {
				text += fmt.Sprintf(" (default %s)", fl.DefValue)
			}
			rows = append(rows, row{names, text})
			width = max(width, len(names))
		}
		for _, r := range rows {
			fmt.Fprintf(w, "  %-*s  %s\n", width, r.names, r.text)
		}
	}
	if len(c.examples) > 0 {
		fmt.Fprintf(w, "\nexamples:\n")
		for _, e := range c.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

// flagKind names what a flag takes: "" for a switch.
func flagKind(fl *flag.Flag) string {
	switch fl.Value.(type) {
	case *boolValue:
		return ""
	case *intValue:
		return "N"
	case *durationValue:
		return "DURATION"
	}
	return "VALUE"
}

// names lists the command's flags for completion: --long and -s forms.
func (f *flags) names() []string {
	var out []string
	for _, long := range f.order {
		out = append(out, "--"+long)
		if s := f.short[long]; s != "" {
			out = append(out, "-"+s)
		}
	}
	sort.Strings(out)
	return out
}

type stringValue struct{ p *string }

func (v *stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}
func (v *stringValue) Set(s string) error { *v.p = s; return nil }

type boolValue struct{ p *bool }

func (v *boolValue) String() string {
	if v.p == nil || !*v.p {
		return "false"
	}
	return "true"
}
func (v *boolValue) Set(s string) error {
	switch strings.ToLower(s) {
	case "true", "1", "yes":
		*v.p = true
	case "false", "0", "no":
		*v.p = false
	default:
		return errors.New("want true or false")
	}
	return nil
}
func (v *boolValue) IsBoolFlag() bool { return true }

type intValue struct{ p *int }

func (v *intValue) String() string {
	if v.p == nil {
		return "0"
	}
	return fmt.Sprint(*v.p)
}
func (v *intValue) Set(s string) error {
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || fmt.Sprint(n) != strings.TrimPrefix(s, "+") {
		return errors.New("want a whole number")
	}
	*v.p = n
	return nil
}

type durationValue struct{ p *time.Duration }

func (v *durationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}
func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration such as 30s or 2m")
	}
	*v.p = d
	return nil
}

type listValue struct{ p *[]string }

func (v *listValue) String() string {
	if v.p == nil || len(*v.p) == 0 {
		return "[]"
	}
	return strings.Join(*v.p, ",")
}
func (v *listValue) Set(s string) error { *v.p = append(*v.p, s); return nil }

// plural is "1 thing" or "n things".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
