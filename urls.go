package registry

import (
	"net/url"
	"strconv"
	"strings"
)

// Registry URLs, built and parsed in one place for the client and the
// server (distribution-spec, "Endpoints"):
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

// Endpoint kinds.
const (
	kindManifests = "manifests"
	kindBlobs     = "blobs"
	kindReferrers = "referrers"
	kindTags      = "tags"
)

const catalogPath = "/v2/_catalog"

// apiPath is /v2/<name>/<kind>/<reference> (kindTags: /v2/<name>/tags/list).
func apiPath(name, kind, reference string) string {
	if kind == kindTags {
		return "/v2/" + name + "/tags/list"
	}
	return "/v2/" + name + "/" + kind + "/" + reference
}

// pageQuery is the query of a paginated list: n (when positive) and last
// (when not empty).
func pageQuery(n int, last string) string {
	var q []string
	if n > 0 {
		q = append(q, "n="+strconv.Itoa(n))
	}
	if last != "" {
		q = append(q, "last="+url.QueryEscape(last))
	}
	return strings.Join(q, "&")
}

// route is a parsed API path.
type route struct {
	name, kind, reference string
}

// parseRoute splits an API path into the repository name, the kind of
// endpoint and its reference. The name is everything between /v2/ and the
// last two segments, so a name may itself contain "manifests" or "blobs"
// components. The name is not validated here.
func parseRoute(path string) (route, bool) {
	rest, found := strings.CutPrefix(path, "/v2/")
	if !found {
		return route{}, false
	}
	if n, found := strings.CutSuffix(rest, "/tags/list"); found {
		return route{n, kindTags, ""}, n != ""
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 || i == len(rest)-1 {
		return route{}, false
	}
	j := strings.LastIndexByte(rest[:i], '/')
	if j <= 0 {
		return route{}, false
	}
	switch kind := rest[j+1 : i]; kind {
	case kindManifests, kindBlobs, kindReferrers:
		return route{rest[:j], kind, rest[i+1:]}, true
	}
	return route{}, false
}

// Token scopes (Docker registry token authentication, "Scope"):
// "repository:<name>:<actions>" and "registry:catalog:*".
const catalogScope = "registry:catalog:*"

// pullScope is the scope a pull from repository needs.
func pullScope(repository string) string { return "repository:" + repository + ":pull" }

// parseScope splits one scope into its resource type, name and actions.
// The name may contain colons (a registry host with a port).
func parseScope(s string) (typ, name string, actions []string, ok bool) {
	first := strings.IndexByte(s, ':')
	last := strings.LastIndexByte(s, ':')
	if first < 0 || last == first {
		return "", "", nil, false
	}
	return s[:first], s[first+1 : last], strings.Split(s[last+1:], ","), true
}
