package registry

import (
	"errors"
	"fmt"
	"strings"
)

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
//	quoted-string    = DQUOTE *( qdtext / quoted-pair ) DQUOTE
//	quoted-pair      = "\" ( HTAB / SP / VCHAR / obs-text )
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

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func parseChallengeHeader(s string) ([]challenge, error) {
	if len(s) > maxChallengeHeader {
		return nil, fmt.Errorf("%w: header longer than %d bytes", errMalformedChallenge, maxChallengeHeader)
	}
	bad := func(why string) error { return fmt.Errorf("%w: %s", errMalformedChallenge, why) }
	var out []challenge
	cur := -1 // index into out of the challenge being read
	afterComma := true
	i := 0
	skipOWS := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	for {
		skipOWS()
		if i >= len(s) {
			break
		}
		if s[i] == ',' {
			i++
			afterComma = true
			continue
		}
		start := i
		for i < len(s) && (isTchar(s[i]) || s[i] == '/') {
			i++
		}
		name := s[start:i]
		if name == "" {
			return nil, bad(fmt.Sprintf("unexpected %q", s[i]))
		}
		j := i
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		isParam := false
		if j < len(s) && s[j] == '=' {
			k := j + 1
			for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
				k++
			}
			isParam = k < len(s) && (s[k] == '"' || isTchar(s[k]))
			if isParam {
				i = k
			}
		}
		if isParam {
			if cur < 0 {
				return nil, bad("parameter before any scheme")
			}
			if strings.IndexByte(name, '/') >= 0 {
				return nil, bad("invalid parameter name")
			}
			var val string
			if s[i] == '"' {
				var b strings.Builder
				i++
				closed := false
				for i < len(s) {
					c := s[i]
					if c == '\\' && i+1 < len(s) {
						b.WriteByte(s[i+1])
						i += 2
						continue
					}
					if c == '"' {
						closed = true
						i++
						break
					}
					if c < 0x20 && c != '\t' || c == 0x7f {
						return nil, bad("control character in quoted string")
					}
					b.WriteByte(c)
					i++
				}
				if !closed {
					return nil, bad("unterminated quoted string")
				}
				val = b.String()
			} else {
				vs := i
				for i < len(s) && isTchar(s[i]) {
					i++
				}
				val = s[vs:i]
			}
			key := strings.ToLower(name)
			if _, dup := out[cur].Params[key]; dup {
				return nil, bad("repeated parameter " + key)
			}
			if len(out[cur].Params) >= maxChallengeParams {
				return nil, bad("too many parameters")
			}
			out[cur].Params[key] = val
			afterComma = false
			skipOWS()
			if i < len(s) && s[i] != ',' {
				return nil, bad("junk after parameter " + key)
			}
			continue
		}
		// A bare token: the token68 of the current challenge when it follows
		// the scheme after a space, otherwise a new scheme.
		if cur >= 0 && !afterComma && out[cur].Token68 == "" && len(out[cur].Params) == 0 {
			for i < len(s) && s[i] == '=' {
				i++
			}
			out[cur].Token68 = s[start:i]
			skipOWS()
			if i < len(s) && s[i] != ',' {
				return nil, bad("junk after token68")
			}
			continue
		}
		if !afterComma {
			return nil, bad("missing comma before " + printable(name, 40))
		}
		if strings.IndexByte(name, '/') >= 0 {
			return nil, bad("invalid scheme")
		}
		out = append(out, challenge{Scheme: strings.ToLower(name), Params: map[string]string{}})
		cur = len(out) - 1
		afterComma = false
		if len(out) > maxChallenges {
			return nil, bad("too many challenges")
		}
	}
	if len(out) == 0 {
		return nil, bad("no challenge")
	}
	return out, nil
}
