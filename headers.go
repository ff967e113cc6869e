package registry

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The header toolkit: one scanner for the token and quoted-string
// grammar of RFC 9110 section 5.6, and the parsers built on it for every
// header the client and the server read (WWW-Authenticate, Link, Range,
// Content-Range, Retry-After, If-None-Match).
//
//	token         = 1*tchar
//	tchar         = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "."
//	              / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
//	quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
//	quoted-pair   = "\" ( HTAB / SP / VCHAR / obs-text )
//	OWS           = *( SP / HTAB )

// isTchar reports a token character.
func isTchar(c byte) bool { return tcharTable[c] }

var tcharTable = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// scanner walks one header value.
type scanner struct {
	s string
	i int
}

func (sc *scanner) done() bool { return sc.i >= len(sc.s) }

// peek is the next byte, or 0 at the end.
func (sc *scanner) peek() byte {
	if sc.done() {
		return 0
	}
	return sc.s[sc.i]
}

// ows skips optional whitespace.
func (sc *scanner) ows() {
	for sc.i < len(sc.s) && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t') {
		sc.i++
	}
}

// token reads 1*tchar (plus any byte extra allows), or "" when none.
func (sc *scanner) token(extra string) string {
	start := sc.i
	for sc.i < len(sc.s) && (isTchar(sc.s[sc.i]) || strings.IndexByte(extra, sc.s[sc.i]) >= 0) {
		sc.i++
	}
	return sc.s[start:sc.i]
}

var errBadQuoted = errors.New("malformed quoted string")

// quoted reads a quoted-string starting at the opening quote and returns
// its unescaped content; control characters other than HTAB are refused.
func (sc *scanner) quoted() (string, error) {
	if sc.peek() != '"' {
		return "", errBadQuoted
	}
	sc.i++
	var b strings.Builder
	for sc.i < len(sc.s) {
		c := sc.s[sc.i]
		switch {
		case c == '\\' && sc.i+1 < len(sc.s):
			b.WriteByte(sc.s[sc.i+1])
			sc.i += 2
			continue
		case c == '"':
			sc.i++
			return b.String(), nil
		case c < 0x20 && c != '\t' || c == 0x7f:
			return "", fmt.Errorf("%w: control character", errBadQuoted)
		}
		b.WriteByte(c)
		sc.i++
	}
	return "", fmt.Errorf("%w: unterminated", errBadQuoted)
}

// value reads a parameter value: a quoted-string or a token.
func (sc *scanner) value() (string, error) {
	if sc.peek() == '"' {
		return sc.quoted()
	}
	return sc.token(""), nil
}

// challenge is one authentication challenge of a WWW-Authenticate header.
type challenge struct {
	// Scheme is lower-cased: "bearer", "basic", ...
	Scheme string
	// Params maps lower-cased parameter names to their unquoted values.
	Params map[string]string
	// Token68 is the scheme's token68 form, when it used one instead of params.
	Token68 string
}

// Limits on challenges: real ones are a few hundred bytes; these bound what
// a hostile registry can make the parser hold.
const (
	maxChallengeHeader = 16 << 10
	maxChallenges      = 16
	maxChallengeParams = 32
)

var errMalformedChallenge = errors.New("malformed WWW-Authenticate")

// parseChallenges parses every WWW-Authenticate header value. The grammar
// (RFC 9110 section 11.6.1, from RFC 7235):
//
//	WWW-Authenticate = #challenge
//	challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//	auth-param       = token BWS "=" BWS ( token / quoted-string )
//	token68          = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//
// Commas separate both challenges and parameters: a bare token after a
// comma starts a new challenge, a token followed by "=" and a value is a
// parameter of the current one. Scheme and parameter names are
// case-insensitive and returned lower-cased. A header that breaks the
// grammar is skipped, with an error if no header yields a challenge.
func parseChallenges(headers []string) ([]challenge, error) {
	var out []challenge
	var firstErr error
	for _, h := range headers {
		cs, err := parseChallengeHeader(h)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		out = append(out, cs...)
		if len(out) > maxChallenges {
			return nil, fmt.Errorf("%w: more than %d challenges", errMalformedChallenge, maxChallenges)
		}
	}
	if len(out) == 0 && firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// challengeParser holds the state of one WWW-Authenticate value.
type challengeParser struct {
	scanner
	out        []challenge
	afterComma bool
}

func parseChallengeHeader(s string) ([]challenge, error) {
	if len(s) > maxChallengeHeader {
		return nil, fmt.Errorf("%w: header longer than %d bytes", errMalformedChallenge, maxChallengeHeader)
	}
	p := &challengeParser{scanner: scanner{s: s}, afterComma: true}
	for {
		p.ows()
		if p.done() {
			break
		}
		if p.peek() == ',' {
			p.i++
			p.afterComma = true
			continue
		}
		if err := p.item(); err != nil {
			return nil, fmt.Errorf("%w: %v", errMalformedChallenge, err)
		}
	}
	if len(p.out) == 0 {
		return nil, fmt.Errorf("%w: no challenge", errMalformedChallenge)
	}
	return p.out, nil
}

// item reads what follows a comma or a scheme: a parameter, a token68 or
// a new scheme.
func (p *challengeParser) item() error {
	start := p.i
	name := p.token("/")
	if name == "" {
		return fmt.Errorf("unexpected %q", p.peek())
	}
	if p.atParamValue() {
		return p.param(name)
	}
	cur := len(p.out) - 1
	// A bare token: the token68 of the current challenge when it follows
	// the scheme after a space, otherwise a new scheme.
	if cur >= 0 && !p.afterComma && p.out[cur].Token68 == "" && len(p.out[cur].Params) == 0 {
		for p.peek() == '=' {
			p.i++
		}
		p.out[cur].Token68 = p.s[start:p.i]
		return p.endOfItem("token68")
	}
	if !p.afterComma {
		return fmt.Errorf("missing comma before %s", printable(name, 40))
	}
	if strings.IndexByte(name, '/') >= 0 {
		return errors.New("invalid scheme")
	}
	p.out = append(p.out, challenge{Scheme: strings.ToLower(name), Params: map[string]string{}})
	p.afterComma = false
	if len(p.out) > maxChallenges {
		return errors.New("too many challenges")
	}
	return nil
}

// atParamValue reports (and moves past) BWS "=" BWS when a value follows.
func (p *challengeParser) atParamValue() bool {
	save := p.i
	p.ows()
	if p.peek() == '=' {
		p.i++
		p.ows()
		if c := p.peek(); c == '"' || isTchar(c) {
			return true
		}
	}
	p.i = save
	return false
}

func (p *challengeParser) param(name string) error {
	cur := len(p.out) - 1
	if cur < 0 {
		return errors.New("parameter before any scheme")
	}
	if strings.IndexByte(name, '/') >= 0 {
		return errors.New("invalid parameter name")
	}
	val, err := p.value()
	if err != nil {
		return err
	}
	key := strings.ToLower(name)
	if _, dup := p.out[cur].Params[key]; dup {
		return errors.New("repeated parameter " + key)
	}
	if len(p.out[cur].Params) >= maxChallengeParams {
		return errors.New("too many parameters")
	}
	p.out[cur].Params[key] = val
	p.afterComma = false
	return p.endOfItem("parameter " + key)
}

// endOfItem requires a comma or the end after an item.
func (p *challengeParser) endOfItem(what string) error {
	p.ows()
	if !p.done() && p.peek() != ',' {
		return errors.New("junk after " + what)
	}
	return nil
}

// maxLinkHeader caps the Link headers of one page: a next link is a URL
// of a few hundred bytes.
const maxLinkHeader = 16 << 10

// parseNextLink finds the rel="next" target in a Link header (RFC 8288
// section 3):
//
//	Link       = #link-value
//	link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param )
//	link-param = token BWS [ "=" BWS ( token / quoted-string ) ]
//
// rel may hold several space-separated relation types. The target is
// resolved against base. No header, or no next link, returns nil; a
// header that breaks the grammar is an error wrapping ErrProtocol.
func parseNextLink(header string, base *url.URL) (*url.URL, error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: malformed Link header %q: %s", ErrProtocol, printable(header, 120), why)
	}
	if len(header) > maxLinkHeader {
		return nil, bad("too long")
	}
	sc := &scanner{s: strings.TrimSpace(header)}
	for {
		for !sc.done() && (sc.peek() == ',' || sc.peek() == ' ' || sc.peek() == '\t') {
			sc.i++
		}
		if sc.done() {
			return nil, nil
		}
		target, isNext, err := linkValue(sc)
		if err != nil {
			return nil, bad(err.Error())
		}
		if !isNext {
			continue
		}
		u, err := base.Parse(target)
		if err != nil || target == "" {
			return nil, bad("invalid target")
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return nil, bad("target is not http(s)")
		}
		return u, nil
	}
}

// linkValue reads one link-value and reports whether it has rel="next".
func linkValue(sc *scanner) (target string, isNext bool, err error) {
	if sc.peek() != '<' {
		return "", false, errors.New("expected <")
	}
	end := strings.IndexByte(sc.s[sc.i:], '>')
	if end < 0 {
		return "", false, errors.New("unclosed <")
	}
	target = sc.s[sc.i+1 : sc.i+end]
	sc.i += end + 1
	for {
		sc.ows()
		if sc.done() || sc.peek() == ',' {
			return target, isNext, nil
		}
		if sc.peek() != ';' {
			return "", false, errors.New("expected ; or ,")
		}
		sc.i++
		sc.ows()
		name := strings.ToLower(sc.token(""))
		if name == "" {
			return "", false, errors.New("empty parameter name")
		}
		sc.ows()
		var val string
		if sc.peek() == '=' {
			sc.i++
			sc.ows()
			if val, err = sc.value(); err != nil {
				return "", false, err
			}
		}
		if name == "rel" {
			for _, r := range strings.Fields(strings.ToLower(val)) {
				isNext = isNext || r == "next"
			}
		}
	}
}

// parseContentRange reads "bytes first-last/total" (RFC 9110 section
// 14.4); total is -1 for "*".
func parseContentRange(v string) (first, last, total int64, err error) {
	bad := errors.New("malformed Content-Range")
	rest, ok := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, bad
	}
	f, l, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	if first, err = parseUint(f); err != nil {
		return 0, 0, 0, bad
	}
	if last, err = parseUint(l); err != nil || last < first {
		return 0, 0, 0, bad
	}
	if tot == "*" {
		return first, last, -1, nil
	}
	if total, err = parseUint(tot); err != nil || total <= last {
		return 0, 0, 0, bad
	}
	return first, last, total, nil
}

// parseRetryAfter reads Retry-After (RFC 9110 section 10.2.3): delay-seconds
// or an HTTP-date. Unparsable or past values mean zero.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := parseUint(v); err == nil {
		n = min(n, 1<<31)
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// parseUint reads 1*DIGIT as a non-negative int64, refusing values that
// do not fit.
func parseUint(s string) (int64, error) {
	if s == "" || len(s) > 18 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("not a number")
	}
	return strconv.ParseInt(s, 10, 64)
}
