package registry

import (
	"net/url"
	"testing"
	"time"
)

func TestParseChallenges(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string
		want    []challenge // nil with bad set: an error
		bad     bool
	}{
		{"docker hub", []string{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull"`},
			[]challenge{{Scheme: "bearer", Params: map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/ubuntu:pull"}}}, false},
		{"ghcr", []string{`Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/r:pull"`},
			[]challenge{{Scheme: "bearer", Params: map[string]string{"realm": "https://ghcr.io/token", "service": "ghcr.io", "scope": "repository:o/r:pull"}}}, false},
		{"quay", []string{`Bearer realm="https://quay.io/v2/auth",service="quay.io"`},
			[]challenge{{Scheme: "bearer", Params: map[string]string{"realm": "https://quay.io/v2/auth", "service": "quay.io"}}}, false},
		{"gcr", []string{`Bearer realm="https://gcr.io/v2/token",service="gcr.io",scope="repository:p/i:pull"`},
			[]challenge{{Scheme: "bearer", Params: map[string]string{"realm": "https://gcr.io/v2/token", "service": "gcr.io", "scope": "repository:p/i:pull"}}}, false},
		{"artifact registry", []string{`Bearer realm="https://us-docker.pkg.dev/v2/token",service="us-docker.pkg.dev",scope="repository:p/r/i:pull"`},
			[]challenge{{Scheme: "bearer", Params: map[string]string{"realm": "https://us-docker.pkg.dev/v2/token", "service": "us-docker.pkg.dev", "scope": "repository:p/r/i:pull"}}}, false},
		{"ecr basic", []string{`Basic realm="https://123.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com"`},
			[]challenge{{Scheme: "basic", Params: map[string]string{"realm": "https://123.dkr.ecr.us-east-1.amazonaws.com/", "service": "ecr.amazonaws.com"}}}, false},
		{"harbor", []string{`Bearer realm="https://harbor.example/service/token",service="harbor-registry",scope="repository:lib/x:pull"`},
			[]challenge{{Scheme: "bearer", Params: map[string]string{"realm": "https://harbor.example/service/token", "service": "harbor-registry", "scope": "repository:lib/x:pull"}}}, false},
		{"artifactory", []string{`Bearer realm="https://a.jfrog.io/artifactory/api/docker/r/v2/token",service="a.jfrog.io"`},
			[]challenge{{Scheme: "bearer", Params: map[string]string{"realm": "https://a.jfrog.io/artifactory/api/docker/r/v2/token", "service": "a.jfrog.io"}}}, false},
		{"insufficient scope", []string{`Bearer realm="https://r/t",error="insufficient_scope",scope="repository:a:pull"`},
			[]challenge{{Scheme: "bearer", Params: map[string]string{"realm": "https://r/t", "error": "insufficient_scope", "scope": "repository:a:pull"}}}, false},
		{"two in one header", []string{`Basic realm="a", Bearer realm="b", service="s"`},
			[]challenge{{Scheme: "basic", Params: map[string]string{"realm": "a"}}, {Scheme: "bearer", Params: map[string]string{"realm": "b", "service": "s"}}}, false},
		{"two headers", []string{`Basic realm="a"`, `BEARER Realm="b"`},
			[]challenge{{Scheme: "basic", Params: map[string]string{"realm": "a"}}, {Scheme: "bearer", Params: map[string]string{"realm": "b"}}}, false},
		{"escapes and commas", []string{`Bearer realm="https://x/t?a=1,b=2",scope="q\"uo\\te"`},
			[]challenge{{Scheme: "bearer", Params: map[string]string{"realm": "https://x/t?a=1,b=2", "scope": `q"uo\te`}}}, false},
		{"token values and spaces", []string{`Bearer  realm = tokenrealm , service=svc`},
			[]challenge{{Scheme: "bearer", Params: map[string]string{"realm": "tokenrealm", "service": "svc"}}}, false},
		{"token68", []string{`Negotiate abc==, Basic realm="r"`},
			[]challenge{{Scheme: "negotiate", Params: map[string]string{}, Token68: "abc=="}, {Scheme: "basic", Params: map[string]string{"realm": "r"}}}, false},
		{"bare scheme", []string{`Basic`}, []challenge{{Scheme: "basic", Params: map[string]string{}}}, false},
		{"unterminated quote", []string{`Bearer realm="https://x`}, nil, true},
		{"param before scheme", []string{`realm="x"`}, nil, true},
		{"junk", []string{`Bearer realm="x" junk`}, nil, true},
		{"empty", []string{``}, nil, true},
		{"duplicate param", []string{`Bearer realm="a",realm="b"`}, nil, true},
		{"control char", []string{"Bearer realm=\"a\x01\""}, nil, true},
		{"one bad header of two", []string{`Bearer realm="x`, `Basic realm="ok"`}, []challenge{{Scheme: "basic", Params: map[string]string{"realm": "ok"}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseChallenges(tc.headers)
			if tc.bad {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i].Scheme != tc.want[i].Scheme || got[i].Token68 != tc.want[i].Token68 || len(got[i].Params) != len(tc.want[i].Params) {
					t.Fatalf("got %+v, want %+v", got[i], tc.want[i])
				}
				for k, v := range tc.want[i].Params {
					if got[i].Params[k] != v {
						t.Errorf("param %s: got %q, want %q", k, got[i].Params[k], v)
					}
				}
			}
		})
	}
}

func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{
		`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull"`,
		`Basic realm="a", Bearer realm="b", service="s"`, `Negotiate abc==, Basic realm="r"`,
		`Bearer realm="https://x/t?a=1,b=2",scope="q\"uo\\te"`, `Bearer realm="x`, ``, `,,,`, `a=b`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := parseChallenges([]string{s})
		if err == nil && len(cs) == 0 {
			t.Fatal("no error and no challenge")
		}
		for _, c := range cs {
			if c.Scheme == "" || len(c.Params) > maxChallengeParams {
				t.Fatalf("bad challenge %+v", c)
			}
		}
	})
}

func TestParseNextLink(t *testing.T) {
	base, _ := url.Parse("https://r.example/v2/a/tags/list?n=2")
	for _, tc := range []struct {
		h, want string
		bad     bool
	}{
		{"", "", false},
		{`</v2/a/tags/list?n=2&last=b>; rel="next"`, "https://r.example/v2/a/tags/list?n=2&last=b", false},
		{`<https://other.example/v2/a/tags/list?last=b>; rel=next`, "https://other.example/v2/a/tags/list?last=b", false},
		{`</x>; rel="prev", </y>; rel="next"`, "https://r.example/y", false},
		{`</y>; title="a;b,c"; rel="first next"`, "https://r.example/y", false},
		{`</y>; rel="prev"`, "", false},
		{`/y; rel="next"`, "", true},
		{`</y; rel="next"`, "", true},
		{`</y> rel="next"`, "", true},
		{`<ftp://x/y>; rel="next"`, "", true},
	} {
		got, err := parseNextLink(tc.h, base)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: got %v, want an error", tc.h, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.h, err)
			continue
		}
		gs := ""
		if got != nil {
			gs = got.String()
		}
		if gs != tc.want {
			t.Errorf("%q: got %q, want %q", tc.h, gs, tc.want)
		}
	}
}

func FuzzParseNextLink(f *testing.F) {
	for _, s := range []string{`</v2/a/tags/list?n=2&last=b>; rel="next"`, `</x>; rel="prev", </y>; rel="next"`, `</y; rel="next"`, `<`, `;;`} {
		f.Add(s)
	}
	base, _ := url.Parse("https://r.example/v2/a/tags/list")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseNextLink(s, base)
		if err == nil && u != nil && u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("accepted scheme %q", u.Scheme)
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"5", 5 * time.Second}, {" 10 ", 10 * time.Second}, {"-1", 0}, {"abc", 0},
		{"Thu, 01 Jan 2026 00:00:30 GMT", 30 * time.Second}, {"Wed, 31 Dec 2025 00:00:00 GMT", 0},
		{"99999999999999999999", 0},
	} {
		if got := parseRetryAfter(tc.v, now); got != tc.want {
			t.Errorf("%q: got %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	u, _ := url.Parse("https://user:pw@s3.example/b/k?X-Amz-Signature=abc&n=5&token=t#frag")
	got := redactURL(u)
	want := "https://s3.example/b/k?X-Amz-Signature=REDACTED&n=5&token=REDACTED"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
