// Package registry is the pull side of the OCI Distribution Specification
// v1.1: a [Client] that reads manifests and blobs from a registry and
// verifies every byte, and a [Server] that serves refs from memory,
// spec-exact, for tests and pull-through caches. Both share the data model
// of package [github.com/ocipull/registry/oci].
//
// The client negotiates Bearer tokens and Basic authentication from
// WWW-Authenticate challenges ([CredentialSource], [DockerConfig]), retries
// transient failures with a backoff/v4 policy honouring Retry-After, resumes
// broken blob downloads with Range requests, and returns lazy refs: the
// manifest is read and verified at once, child manifests and blobs only
// when asked for. [ParseReference] turns what users type into a client.
//
// Failures are typed: HTTP failures are [*ClientError], matched with
// [errors.Is] against [ErrNotFound], [ErrManifestUnknown], [ErrUnauthorized],
// [ErrDenied], [ErrTooManyRequests] and the others; local failures wrap
// [ErrInvalidReference], [ErrDigestMismatch], [ErrTooLarge], [ErrProtocol]
// and the data model's sentinels.
//
// Package [github.com/ocipull/registry/faults] wraps a Server with network
// and registry faults for testing clients against them.
package registry
