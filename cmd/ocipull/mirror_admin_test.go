package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocipull/registry/internal/testwait"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/mirror"
	"github.com/ocipull/registry/oci"
)

// TestMirrorAdminOnLiveStore: ocipull mirror ls, purge and gc work on the
// store a running mirror process serves from, which goes on serving (a
// purged tag is fetched again); the same operations over the admin API
// need an admin user's Basic auth (a wrong password, a user who is not an
// admin and no credentials are refused).
func TestMirrorAdminOnLiveStore(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	f := newFixture(t, nil)
	dir := t.TempDir()
	users := filepath.Join(t.TempDir(), "htpasswd")
	os.WriteFile(users, []byte(bcryptLine(t, "ops", "ops-pw")+bcryptLine(t, "dev", "dev-pw")), 0o600)
	_, addr, admin, _ := startMirrorWithAdmin(t, "--cache", dir, "--upstream", "http://"+f.host, "--htpasswd", users,
		"--anonymous", "*", "--admin-user", "ops", "--admin-addr", "127.0.0.1:0")
	// Anonymous pulls (a token from the mirror's /token, as any client).
	pull := func() error {
		c := (&registry.Registry{Scheme: "http", Host: addr}).Repository("app/x")
		ref, err := c.Read(context.Background(), "v1")
		if err != nil {
			return err
		}
		// Every platform's manifest: the tag is recorded once the store
		// holds all of them.
		return oci.Walk(context.Background(), ref, func(oci.Ref) error { return nil })
	}
	if err := pull(); err != nil {
		t.Fatalf("pull: %v", err)
	}
	name := f.host + "/app/x:v1"
	testwait.Until(t, "the tag in the store", func() bool {
		_, out, _ := runCmd(t, "", "mirror", "ls", "--cache", dir)
		return strings.Contains(out, name)
	})
	code, out, errs := runCmd(t, "", "mirror", "ls", "--json", "--cache", dir)
	var inv mirror.Inventory
	if code != 0 || json.Unmarshal([]byte(out), &inv) != nil || len(inv.Images) != 1 || inv.Images[0].Size == 0 {
		t.Fatalf("ls --json: exit %d %s %s", code, out, errs)
	}
	code, out, errs = runCmd(t, "", "mirror", "purge", "--cache", dir, name)
	if code != 0 || !strings.Contains(out, "purged "+name) {
		t.Fatalf("purge: exit %d %s %s", code, out, errs)
	}
	if err := pull(); err != nil {
		t.Errorf("the running mirror after a purge: %v", err)
	}
	if code, out, errs = runCmd(t, "", "mirror", "gc", "--cache", dir, "--grace", "0s"); code != 0 || !strings.Contains(out, "removed") {
		t.Errorf("gc: exit %d %s %s", code, out, errs)
	}
	if code, _, errs = runCmd(t, "", "mirror", "purge", "--cache", dir, "nothing/here:v9"); code == 0 || !strings.Contains(errs, "not found") {
		t.Errorf("purge of an unknown name: exit %d %s", code, errs)
	}

	// The admin API: admin users only.
	call := func(method, path, user, pass string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+admin+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct{ user, pass string }{{"", ""}, {"ops", "wrong"}, {"dev", "dev-pw"}} {
		if code, _ := call("GET", "/admin/v1/store", c.user, c.pass); code != http.StatusUnauthorized {
			t.Errorf("admin API as %q/%q: %d, want 401", c.user, c.pass, code)
		}
	}
	testwait.Until(t, "the tag recorded again", func() bool {
		code, body := call("GET", "/admin/v1/store", "ops", "ops-pw")
		return code == 200 && strings.Contains(body, name)
	})
	if code, body := call("POST", "/admin/v1/purge?ref="+name, "ops", "ops-pw"); code != 200 || !strings.Contains(body, name) {
		t.Errorf("purge over the API: %d %s", code, body)
	}
	if code, body := call("POST", "/admin/v1/gc?grace=0s", "ops", "ops-pw"); code != 200 || !strings.Contains(body, `"blobs"`) {
		t.Errorf("gc over the API: %d %s", code, body)
	}
	if code, _ := call("POST", "/admin/v1/purge?ref=no-slash", "ops", "ops-pw"); code != http.StatusBadRequest {
		t.Errorf("purge of a malformed reference over the API: %d, want 400", code)
	}
	if err := pull(); err != nil {
		t.Errorf("the running mirror after the API's purge: %v", err)
	}
}
