// Package wire is the distribution API as this project serves it, shared
// by the in-memory test server (package registry) and the pull-through
// cache (package mirror) so that both answer alike: the routes under /v2/
// and the token scopes they need, the repository and tag grammars, error
// codes and bodies, blob and manifest response headers, byte ranges,
// paginated lists, the request preamble every handler runs first, and the
// response recorder that keeps sendfile working under a logging wrapper.
//
// It holds no state; everything here is a pure function of its inputs.
package wire
