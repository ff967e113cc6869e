package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// htpasswd is an Apache htpasswd file of bcrypt entries (as `htpasswd -B`
// writes them, the file distribution and zot operators keep), re-read
// when it changes (looked at at most once a second) or on SIGHUP. A file
// that no longer reads keeps the users it had, and the error is logged.
type htpasswd struct {
	path string
	log  func(msg string)

	mu    sync.Mutex
	users map[string][]byte // user → bcrypt hash
	watch fileWatch         // of the file read
}

// maxHtpasswd caps the file: a users file is a few kilobytes.
const maxHtpasswd = 4 << 20

func loadHtpasswd(path string, log func(string)) (*htpasswd, error) {
	h := &htpasswd{path: path, log: log, watch: fileWatch{interval: time.Second}}
	if err := h.reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// parseHtpasswd reads "user:hash" lines; blank lines and lines starting
// with # are skipped; any entry that is not bcrypt is refused with its
// line number.
func parseHtpasswd(b []byte) (map[string][]byte, error) {
	users := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d: want user:hash", n)
		}
		if !strings.HasPrefix(hash, "$2y$") && !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") {
			return nil, fmt.Errorf("line %d: user %s: only bcrypt entries are accepted (htpasswd -B); this one is not", n, safe(user))
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d: user %s: %v", n, safe(user), err)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("line %d: user %s listed twice", n, safe(user))
		}
		users[user] = []byte(hash)
	}
	return users, sc.Err()
}

// reload reads the file again.
func (h *htpasswd) reload() error {
	f, err := os.Open(h.path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() || st.Size() > maxHtpasswd {
		return fmt.Errorf("%s: want a regular file of at most %d bytes", safe(h.path), maxHtpasswd)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && st.Size() > 0 {
		return err
	}
	users, err := parseHtpasswd(b)
	if err != nil {
		return fmt.Errorf("%s: %w", safe(h.path), err)
	}
	h.mu.Lock()
	h.users, h.watch.loaded = users, stampEntry(h.path, st)
	h.mu.Unlock()
	return nil
}

// fresh re-reads the file when it changed since it was read.
func (h *htpasswd) fresh() {
	h.mu.Lock()
	due := h.watch.due()
	_, changed := h.watch.changed(h.path)
	h.mu.Unlock()
	if !due || !changed {
		return
	}
	if err := h.reload(); err != nil && h.log != nil {
		h.log("keeping the users read before: " + err.Error())
	}
}

// dummyHash makes an unknown user cost what a known one does (made on
// first use: a bcrypt hash costs tens of milliseconds).
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("ocipull-not-a-user"), bcrypt.DefaultCost)
	return h
})

// verify checks a user's password (ServerAuth.Verify).
func (h *htpasswd) verify(user, password string) bool {
	h.fresh()
	h.mu.Lock()
	hash, ok := h.users[user]
	h.mu.Unlock()
	if !ok {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

// grantFlags collects repeated --grant USER=REPO[,REPO...] flags.
type grantFlags map[string][]string

func (g grantFlags) String() string {
	var s []string
	for u, r := range g {
		s = append(s, u+"="+strings.Join(r, ","))
	}
	return strings.Join(s, " ")
}

func (g grantFlags) Set(v string) error {
	user, repos, ok := strings.Cut(v, "=")
	if !ok || user == "" || repos == "" {
		return fmt.Errorf("%q: want USER=REPOSITORY[,REPOSITORY...] (upstream-qualified: docker.io/library/alpine; * for all)", v)
	}
	g[user] = append(g[user], strings.Split(repos, ",")...)
	return nil
}
