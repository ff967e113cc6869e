// Package toml reads the subset of TOML (v1.0.0) that containerd's
// hosts.toml files and ocipull's mirror configuration use, recording the
// line of every key so that a reader can say where a value it refuses
// came from.
package toml

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The subset:
// comments, [table] headers with bare, "basic" and 'literal' keys joined
// by dots, key = value with dotted keys, and values that are basic or
// literal strings (one line), booleans, integers, arrays (across lines,
// nested, trailing comma) and inline tables. Anything else (multi-line
// strings, floats, dates, arrays of tables) is an error naming the line,
// never a guess.

// Error is a document refused: the line (from 1) and why.
type Error struct {
	Line int
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// Table is a table: its keys in the order they were first defined.
type Table struct {
	Keys   []string
	vals   map[string]any // string, bool, int64, []any or *Table
	lines  map[string]int // where each key was defined
	header bool           // defined by a [header] (twice is an error)
	inline bool           // an inline table: closed to later additions
}

func newTable() *Table { return &Table{vals: map[string]any{}, lines: map[string]int{}} }

// Get returns the value of key k: a string, bool, int64, []any or *Table.
func (t *Table) Get(k string) (any, bool) { v, ok := t.vals[k]; return v, ok }

// Line is the line (from 1) where key k was defined, 0 if it was not.
func (t *Table) Line(k string) int { return t.lines[k] }

// maxDepth bounds nested arrays and inline tables.
const maxDepth = 32

type parser struct {
	s     string
	i     int
	line  int
	depth int
}

// Parse parses a document into its root table. Errors name the line.
func Parse(src string) (*Table, error) {
	if !utf8.ValidString(src) {
		return nil, errors.New("not valid UTF-8")
	}
	p := &parser{s: src, line: 1}
	root := newTable()
	cur := root
	for {
		p.skipBlank(true)
		if p.eof() {
			return root, nil
		}
		var err error
		if p.s[p.i] == '[' {
			cur, err = p.header(root)
		} else {
			err = p.keyValue(cur)
		}
		if err != nil {
			return nil, &Error{Line: p.line, Err: err}
		}
		if err := p.endOfLine(); err != nil {
			return nil, &Error{Line: p.line, Err: err}
		}
	}
}

func (p *parser) eof() bool { return p.i >= len(p.s) }

// skipBlank skips spaces and tabs, and with newlines also line ends and
// comments.
func (p *parser) skipBlank(newlines bool) {
	for !p.eof() {
		switch c := p.s[p.i]; {
		case c == ' ' || c == '\t':
			p.i++
		case c == '#':
			if !newlines {
				return
			}
			p.skipComment()
		case newlines && (c == '\n' || c == '\r' && p.i+1 < len(p.s) && p.s[p.i+1] == '\n'):
			if c == '\r' {
				p.i++
			}
			p.i++
			p.line++
		default:
			return
		}
	}
}

func (p *parser) skipComment() {
	for !p.eof() && p.s[p.i] != '\n' {
		p.i++
	}
}

// endOfLine requires nothing but blanks and a comment before the line end.
func (p *parser) endOfLine() error {
	p.skipBlank(false)
	if !p.eof() && p.s[p.i] == '#' {
		p.skipComment()
	}
	switch {
	case p.eof():
		return nil
	case p.s[p.i] == '\n':
		return nil
	case p.s[p.i] == '\r' && p.i+1 < len(p.s) && p.s[p.i+1] == '\n':
		return nil
	}
	return fmt.Errorf("unexpected %q after the value", p.s[p.i])
}

// header reads [a.b."c"] and returns the table it opens.
func (p *parser) header(root *Table) (*Table, error) {
	p.i++
	if !p.eof() && p.s[p.i] == '[' {
		return nil, errors.New("arrays of tables ([[...]]) are not supported")
	}
	p.skipBlank(false)
	keys, err := p.keyPath()
	if err != nil {
		return nil, err
	}
	p.skipBlank(false)
	if p.eof() || p.s[p.i] != ']' {
		return nil, errors.New("table header without its closing ]")
	}
	p.i++
	t, err := descend(root, keys, p.line)
	if err != nil {
		return nil, err
	}
	if t.header {
		return nil, fmt.Errorf("table [%s] defined twice", strings.Join(keys, "."))
	}
	t.header = true
	return t, nil
}

// descend walks (creating) the tables keys name below t.
func descend(t *Table, keys []string, line int) (*Table, error) {
	for _, k := range keys {
		v, ok := t.vals[k]
		if !ok {
			n := newTable()
			t.Keys = append(t.Keys, k)
			t.vals[k] = n
			t.lines[k] = line
			t = n
			continue
		}
		sub, isTable := v.(*Table)
		if !isTable || sub.inline {
			return nil, fmt.Errorf("key %q is already a value", k)
		}
		t = sub
	}
	return t, nil
}

// keyValue reads key = value into t.
func (p *parser) keyValue(t *Table) error {
	line := p.line
	keys, err := p.keyPath()
	if err != nil {
		return err
	}
	p.skipBlank(false)
	if p.eof() || p.s[p.i] != '=' {
		return fmt.Errorf("want = after key %q", strings.Join(keys, "."))
	}
	p.i++
	p.skipBlank(false)
	v, err := p.value()
	if err != nil {
		return err
	}
	parent, err := descend(t, keys[:len(keys)-1], line)
	if err != nil {
		return err
	}
	last := keys[len(keys)-1]
	if _, dup := parent.vals[last]; dup {
		return fmt.Errorf("key %q defined twice", strings.Join(keys, "."))
	}
	parent.Keys = append(parent.Keys, last)
	parent.vals[last] = v
	parent.lines[last] = line
	return nil
}

// keyPath reads key(.key)*.
func (p *parser) keyPath() ([]string, error) {
	var keys []string
	for {
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
		p.skipBlank(false)
		if p.eof() || p.s[p.i] != '.' {
			return keys, nil
		}
		p.i++
		p.skipBlank(false)
		if len(keys) > maxDepth {
			return nil, errors.New("key nested too deeply")
		}
	}
}

// key reads one bare, basic or literal key.
func (p *parser) key() (string, error) {
	if p.eof() {
		return "", errors.New("want a key, got the end of the file")
	}
	switch p.s[p.i] {
	case '"':
		return p.basicString()
	case '\'':
		return p.literalString()
	}
	start := p.i
	for !p.eof() && isBareKeyByte(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		return "", fmt.Errorf("want a key, got %q", p.s[p.i])
	}
	return p.s[start:p.i], nil
}

func isBareKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value reads one value.
func (p *parser) value() (any, error) {
	if p.eof() {
		return nil, errors.New("want a value, got the end of the file")
	}
	switch c := p.s[p.i]; {
	case c == '"':
		if strings.HasPrefix(p.s[p.i:], `"""`) {
			return nil, errors.New("multi-line strings are not supported")
		}
		return p.basicString()
	case c == '\'':
		if strings.HasPrefix(p.s[p.i:], `'''`) {
			return nil, errors.New("multi-line strings are not supported")
		}
		return p.literalString()
	case c == '[':
		return p.array()
	case c == '{':
		return p.inlineTable()
	case strings.HasPrefix(p.s[p.i:], "true"):
		p.i += 4
		return true, p.valueEnd()
	case strings.HasPrefix(p.s[p.i:], "false"):
		p.i += 5
		return false, p.valueEnd()
	case c == '+' || c == '-' || c >= '0' && c <= '9':
		return p.integer()
	}
	return nil, fmt.Errorf("unsupported value starting with %q", p.s[p.i])
}

// valueEnd requires a delimiter after a bare value.
func (p *parser) valueEnd() error {
	if p.eof() {
		return nil
	}
	switch p.s[p.i] {
	case ' ', '\t', '\r', '\n', '#', ',', ']', '}':
		return nil
	}
	return fmt.Errorf("unexpected %q after a value", p.s[p.i])
}

// integer reads a decimal integer with optional sign and underscores
// between digits.
func (p *parser) integer() (any, error) {
	start := p.i
	for !p.eof() && strings.IndexByte("+-0123456789_", p.s[p.i]) >= 0 {
		p.i++
	}
	if !p.eof() && strings.IndexByte(".eE:TZxob", p.s[p.i]) >= 0 {
		return nil, errors.New("floats, dates and non-decimal integers are not supported")
	}
	lit := p.s[start:p.i]
	digits := strings.TrimLeft(lit, "+-")
	if len(lit)-len(digits) > 1 || digits == "" || digits[0] == '_' || digits[len(digits)-1] == '_' ||
		strings.Contains(digits, "__") || strings.ContainsAny(digits, "+-") || len(digits) > 1 && digits[0] == '0' {
		return nil, fmt.Errorf("invalid integer %q", lit)
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(lit, "_", ""), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("invalid integer %q", lit)
	}
	return n, p.valueEnd()
}

// array reads [v, v, ...], across lines, with comments.
func (p *parser) array() (any, error) {
	if p.depth++; p.depth > maxDepth {
		return nil, errors.New("values nested too deeply")
	}
	defer func() { p.depth-- }()
	p.i++
	out := []any{}
	for {
		p.skipBlank(true)
		if p.eof() {
			return nil, errors.New("array without its closing ]")
		}
		if p.s[p.i] == ']' {
			p.i++
			return out, nil
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		p.skipBlank(true)
		if p.eof() {
			return nil, errors.New("array without its closing ]")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return out, nil
		default:
			return nil, fmt.Errorf("want , or ] in an array, got %q", p.s[p.i])
		}
	}
}

// inlineTable reads { k = v, ... } on one line.
func (p *parser) inlineTable() (any, error) {
	if p.depth++; p.depth > maxDepth {
		return nil, errors.New("values nested too deeply")
	}
	defer func() { p.depth-- }()
	p.i++
	t := newTable()
	p.skipBlank(false)
	if !p.eof() && p.s[p.i] == '}' {
		p.i++
		t.inline = true
		return t, nil
	}
	for {
		p.skipBlank(false)
		if err := p.keyValue(t); err != nil {
			return nil, err
		}
		p.skipBlank(false)
		if p.eof() {
			return nil, errors.New("inline table without its closing }")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			t.inline = true
			return t, nil
		default:
			return nil, fmt.Errorf("want , or } in an inline table, got %q", p.s[p.i])
		}
	}
}

// literalString reads '...' (no escapes, one line).
func (p *parser) literalString() (string, error) {
	p.i++
	start := p.i
	for !p.eof() {
		c := p.s[p.i]
		switch {
		case c == '\'':
			p.i++
			return p.s[start : p.i-1], nil
		case c == '\n' || c < 0x20 && c != '\t' || c == 0x7f:
			return "", errors.New("control character or line end in a string")
		}
		p.i++
	}
	return "", errors.New("string without its closing quote")
}

// basicString reads "..." with TOML's escapes (one line).
func (p *parser) basicString() (string, error) {
	p.i++
	var b strings.Builder
	for !p.eof() {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\':
			if err := p.escape(&b); err != nil {
				return "", err
			}
			continue
		case c == '\n' || c < 0x20 && c != '\t' || c == 0x7f:
			return "", errors.New("control character or line end in a string")
		}
		b.WriteByte(c)
		p.i++
	}
	return "", errors.New("string without its closing quote")
}

// escape reads one backslash escape into b.
func (p *parser) escape(b *strings.Builder) error {
	if p.i+1 >= len(p.s) {
		return errors.New("string without its closing quote")
	}
	e := p.s[p.i+1]
	p.i += 2
	simple := map[byte]byte{'b': '\b', 't': '\t', 'n': '\n', 'f': '\f', 'r': '\r', '"': '"', '\\': '\\'}
	if r, ok := simple[e]; ok {
		b.WriteByte(r)
		return nil
	}
	n := 0
	switch e {
	case 'u':
		n = 4
	case 'U':
		n = 8
	default:
		return fmt.Errorf("invalid escape \\%c", e)
	}
	if p.i+n > len(p.s) {
		return errors.New("short unicode escape")
	}
	v, err := strconv.ParseUint(p.s[p.i:p.i+n], 16, 32)
	if err != nil || !utf8.ValidRune(rune(v)) {
		return fmt.Errorf("invalid unicode escape \\%c%s", e, p.s[p.i:p.i+n])
	}
	p.i += n
	b.WriteRune(rune(v))
	return nil
}
