package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ocipull/registry"
)

func bcryptLine(t *testing.T, user, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":" + string(h) + "\n"
}

// Cache operations: clients log in with an htpasswd file's users; grants
// name upstream-qualified repositories; a wrong password, a grant to
// another upstream and an unknown user are refused; a user added to the
// file logs in without a restart; other entry kinds are refused with
// their line.
func TestMirrorHtpasswd(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	fa, fb := newFixture(t, nil), newFixture(t, nil)
	users := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(users, []byte("# users\n"+bcryptLine(t, "alice", "a-pw")+bcryptLine(t, "bob", "b-pw")), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{line: make(chan string, 1)}
	var errs strings.Builder
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"mirror", "--cache", t.TempDir(), "--upstream", "http://" + fa.host, "--upstream", "b.example=http://" + fb.host,
			"--addr", "127.0.0.1:0", "--quiet", "--htpasswd", users, "--grant", "alice=" + fa.host + "/app/x"}, nil, out, &errs)
	}()
	var addr string
	select {
	case line := <-out.line:
		addr = mirrorAddr(t, line)
	case code := <-done:
		t.Fatalf("mirror exited %d: %s", code, errs.String())
	}
	pull := func(user, password, repo string) error {
		reg := &registry.Registry{Scheme: "http", Host: addr}
		if user != "" {
			reg.Credentials = registry.StaticCredentials(user, password)
		}
		_, err := reg.Repository(repo).Read(context.Background(), "v1")
		return err
	}
	if err := pull("alice", "a-pw", "app/x"); err != nil {
		t.Errorf("alice, granted: %v", err)
	}
	if err := pull("alice", "wrong", "app/x"); !errors.Is(err, registry.ErrUnauthorized) {
		t.Errorf("alice, wrong password: %v, want ErrUnauthorized", err)
	}
	if err := pull("alice", "a-pw", "b.example/app/x"); !errors.Is(err, registry.ErrDenied) {
		t.Errorf("alice, another upstream's repository: %v, want ErrDenied", err)
	}
	if err := pull("bob", "b-pw", "b.example/app/x"); err != nil {
		t.Errorf("bob, no grant (all): %v", err)
	}
	if err := pull("", "", "app/x"); !errors.Is(err, registry.ErrUnauthorized) {
		t.Errorf("anonymous: %v, want ErrUnauthorized", err)
	}
	if err := pull("carol", "c-pw", "app/x"); !errors.Is(err, registry.ErrUnauthorized) {
		t.Errorf("carol before she is added: %v, want ErrUnauthorized", err)
	}
	// carol added: the file is re-read (looked at at most once a second).
	f, _ := os.OpenFile(users, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(bcryptLine(t, "carol", "c-pw"))
	f.Close()
	for deadline := time.Now().Add(time.Minute); pull("carol", "c-pw", "app/x") != nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("carol never got in")
		}
	}
	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/v2/ anonymously: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	cancel()
	<-done

	// A file with another kind of entry is refused, naming the line.
	bad := filepath.Join(t.TempDir(), "htpasswd")
	os.WriteFile(bad, []byte(bcryptLine(t, "alice", "x")+"bob:{SHA}abc=\n"), 0o600)
	code, _, stderr := runCmd(t, "", "mirror", "--cache", t.TempDir(), "--upstream", "http://"+fa.host, "--htpasswd", bad)
	if code != 2 || !strings.Contains(stderr, "line 2") || !strings.Contains(stderr, "bcrypt") {
		t.Errorf("a non-bcrypt entry: exit %d: %s", code, stderr)
	}
}

// FuzzParseHtpasswd: the users file reader never panics, and every entry
// it accepts is a bcrypt hash.
func FuzzParseHtpasswd(f *testing.F) {
	f.Add([]byte("alice:$2y$05$abcdefghijklmnopqrstuuY4bN0hXv5U0aNvY3fJmH8m1dZ4oK9Kq\n"))
	f.Add([]byte("# c\n\nbob:{SHA}abc=\n"))
	f.Add([]byte(":\n::\nx:$2a$\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		users, err := parseHtpasswd(b)
		if err != nil {
			return
		}
		for u, h := range users {
			if _, err := bcrypt.Cost(h); err != nil || u == "" {
				t.Fatalf("accepted %q: %q", u, h)
			}
		}
	})
}
