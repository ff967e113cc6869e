package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/ocipull/registry/mirror"
	"github.com/ocipull/registry/oci"
)

// mirrorAdminCommand runs `ocipull mirror ls|purge REF|gc` on the store
// at dir, which running caches may be serving from (see mirror.Inspect).
func mirrorAdminCommand(ctx context.Context, e *env, dir string, args []string, grace time.Duration, asJSON bool) error {
	if dir == "" {
		return usageErr("name the store with --cache DIR (or --config FILE)")
	}
	want := map[string]int{"ls": 1, "purge": 2, "gc": 1}
	if n, ok := want[args[0]]; !ok || len(args) != n {
		return usageErr("want ls, purge REF or gc")
	}
	l, err := oci.OpenLayout(dir)
	if err != nil {
		return err
	}
	store := mirror.LayoutStore{Layout: l}
	switch args[0] {
	case "ls":
		inv, err := mirror.Inspect(ctx, store)
		if err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(e.stdout).Encode(inv)
		}
		writeInventory(e, inv)
		return nil
	case "purge":
		r, err := mirror.Purge(ctx, store, args[1])
		if err != nil {
			return err
		}
		if len(r.Names) == 0 {
			return fmt.Errorf("purge %s: %w: no such name in %s", safe(args[1]), oci.ErrNotFound, safe(dir))
		}
		for _, n := range r.Names {
			fmt.Fprintf(e.stdout, "purged %s\n", safe(n))
		}
		fmt.Fprintf(e.stdout, "removed %s (%s)\n", plural(r.Blobs, "blob", "blobs"), humanBytes(r.Bytes))
		return nil
	default:
		r, err := mirror.CollectGarbage(ctx, store, time.Now().Add(-grace))
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "removed %s (%s) unused for %v\n", plural(r.Blobs, "blob", "blobs"), humanBytes(r.Bytes), grace)
		return nil
	}
}

// writeInventory prints an inventory as a table. Names come from the
// store (which other processes write): printed through safe.
func writeInventory(e *env, inv mirror.Inventory) {
	tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDIGEST\tSIZE\tMISSING\tLAST SERVED")
	for _, img := range inv.Images {
		d := string(img.Digest)
		if len(d) > 19 {
			d = d[:19]
		}
		last := "-"
		if !img.LastServed.IsZero() {
			last = img.LastServed.UTC().Format("2006-01-02 15:04")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", safe(img.Name), d, humanBytes(img.Size), img.Missing, last)
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "%s, %s, %s, %s; %s\n", plural(len(inv.Images), "name", "names"), plural(inv.Manifests, "manifest", "manifests"),
		plural(inv.Blobs, "blob", "blobs"), plural(inv.Partials, "landing", "landings"), humanBytes(inv.Bytes))
}

// adminAPI serves /admin/v1/ on the admin listener: the store's
// inventory (GET store), purge (POST purge?ref=REF) and garbage
// collection (POST gc?grace=1h), as JSON, to the users named with
// --admin-user, authenticated with Basic auth against the htpasswd file.
func adminAPI(cache *mirror.Cache, users *htpasswd, admins []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if users == nil || len(admins) == 0 {
			http.Error(w, `{"error":"the admin API is off: name admin users (--admin-user, auth.admins) and an htpasswd file"}`, http.StatusForbidden)
			return
		}
		user, pass, ok := r.BasicAuth()
		allowed := false
		for _, a := range admins {
			allowed = allowed || subtle.ConstantTimeCompare([]byte(a), []byte(user)) == 1
		}
		if !ok || !allowed || !users.verify(user, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="ocipull-mirror-admin"`)
			http.Error(w, `{"error":"authentication required"}`, http.StatusUnauthorized)
			return
		}
		var v any
		var err error
		switch {
		case r.URL.Path == "/admin/v1/store" && r.Method == http.MethodGet:
			v, err = cache.Inspect(r.Context())
		case r.URL.Path == "/admin/v1/purge" && r.Method == http.MethodPost:
			v, err = cache.Purge(r.Context(), r.URL.Query().Get("ref"))
		case r.URL.Path == "/admin/v1/gc" && r.Method == http.MethodPost:
			grace := time.Hour
			if g := r.URL.Query().Get("grace"); g != "" {
				if grace, err = time.ParseDuration(g); err != nil || grace < 0 {
					http.Error(w, `{"error":"grace: want a duration such as 1h"}`, http.StatusBadRequest)
					return
				}
			}
			v, err = cache.CollectGarbage(r.Context(), time.Now().Add(-grace))
		default:
			http.Error(w, `{"error":"not found: GET store, POST purge?ref=REF, POST gc?grace=DURATION"}`, http.StatusNotFound)
			return
		}
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": safe(err.Error())})
			return
		}
		json.NewEncoder(w).Encode(v)
	})
}
