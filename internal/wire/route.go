package wire

import (
	"net/url"
	"strconv"
	"strings"
)

// Registry URLs (distribution-spec, "Endpoints"):
//
//	/v2/                                   the API root
//	/v2/<name>/manifests/<reference>       a manifest by tag or digest
//	/v2/<name>/blobs/<digest>              a blob
//	/v2/<name>/referrers/<digest>          referrers (OCI 1.1)
//	/v2/<name>/tags/list?n=&last=          tags, paginated
//	/v2/_catalog?n=&last=                  repositories, paginated
//
// Names, tags and digests are validated before a path is built, so none
// needs escaping; query values are escaped.

// Endpoint kinds, as they appear in paths.
const (
	Manifests = "manifests"
	Blobs     = "blobs"
	Referrers = "referrers"
	Tags      = "tags"
)

// CatalogPath is the repository list.
const CatalogPath = "/v2/_catalog"

// Path is /v2/<name>/<kind>/<reference> (Tags: /v2/<name>/tags/list).
func Path(name, kind, reference string) string {
	if kind == Tags {
		return "/v2/" + name + "/tags/list"
	}
	return "/v2/" + name + "/" + kind + "/" + reference
}

// PageQuery is the query of a paginated list: n (when positive) and last
// (when not empty).
func PageQuery(n int, last string) string {
	var q []string
	if n > 0 {
		q = append(q, "n="+strconv.Itoa(n))
	}
	if last != "" {
		q = append(q, "last="+url.QueryEscape(last))
	}
	return strings.Join(q, "&")
}

// Route is a parsed API path: the repository name, the kind of endpoint
// and its reference (a tag or digest; empty for Tags).
type Route struct {
	Name, Kind, Reference string
}

// ParseRoute splits an API path into a Route. The name is everything
// between /v2/ and the last two segments, so a name may itself contain
// "manifests" or "blobs". Nothing is validated but the shape.
func ParseRoute(path string) (Route, bool) {
	rest, found := strings.CutPrefix(path, "/v2/")
	if !found {
		return Route{}, false
	}
	if n, found := strings.CutSuffix(rest, "/tags/list"); found {
		return Route{n, Tags, ""}, n != ""
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 || i == len(rest)-1 {
		return Route{}, false
	}
	j := strings.LastIndexByte(rest[:i], '/')
	if j <= 0 {
		return Route{}, false
	}
	switch kind := rest[j+1 : i]; kind {
	case Manifests, Blobs, Referrers:
		return Route{rest[:j], kind, rest[i+1:]}, true
	}
	return Route{}, false
}

// Token scopes (Docker registry token authentication, "Scope"):
// "repository:<name>:<actions>" and "registry:catalog:*".
const CatalogScope = "registry:catalog:*"

// PullScope is the scope a pull from repository needs.
func PullScope(repository string) string { return "repository:" + repository + ":pull" }

// ParseScope splits one scope into its resource type, name and actions.
// The name may contain colons (a registry host with a port).
func ParseScope(s string) (typ, name string, actions []string, ok bool) {
	first := strings.IndexByte(s, ':')
	last := strings.LastIndexByte(s, ':')
	if first < 0 || last == first {
		return "", "", nil, false
	}
	return s[:first], s[first+1 : last], strings.Split(s[last+1:], ","), true
}
