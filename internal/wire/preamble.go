package wire

import (
	"net/http"
	"strings"
)

// Two more kinds of request the preamble tells apart.
const (
	Root    = "root"    // /v2/ itself
	Catalog = "catalog" // /v2/_catalog
)

// Preamble runs what every handler of the read-only API does first: it
// sets Docker-Distribution-Api-Version, answers 404 for paths outside
// /v2/ and for unknown API paths, and 405 (with Allow) for methods other
// than GET and HEAD. Otherwise it returns the request's route (Kind Root
// or Catalog for those two) and true; the caller authorizes and serves.
// Nothing in the route is validated beyond its shape.
func Preamble(w http.ResponseWriter, r *http.Request) (Route, bool) {
	w.Header()["Docker-Distribution-Api-Version"] = []string{"registry/2.0"}
	path := r.URL.Path
	if path != "/v2" && !strings.HasPrefix(path, "/v2/") {
		WriteError(w, http.StatusNotFound, CodeUnsupported, "not a registry API path")
		return Route{}, false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		WriteError(w, http.StatusMethodNotAllowed, CodeUnsupported, "this registry is read-only")
		return Route{}, false
	}
	switch path {
	case "/v2", "/v2/":
		return Route{Kind: Root}, true
	case CatalogPath:
		return Route{Kind: Catalog}, true
	}
	rt, ok := ParseRoute(path)
	if !ok {
		WriteError(w, http.StatusNotFound, CodeUnsupported, "unknown API path")
		return Route{}, false
	}
	return rt, true
}
