// Package registry is the pull side of the OCI Distribution Specification
// v1.1: a [Client] that reads manifests and blobs from a registry and
// verifies every byte, a [Server] that serves refs from memory,
// spec-exact, for tests, and a [Mirror], the pull-through cache built
// from the two over an OCI layout store. All share the data model of
// package [github.com/ocipull/registry/oci].
//
// The client negotiates Bearer tokens and Basic authentication from
// WWW-Authenticate challenges ([CredentialSource], [DockerConfig]), retries
// transient failures with a backoff/v4 policy honouring Retry-After, resumes
// broken blob downloads with Range requests, and returns lazy refs: the
// manifest is read and verified at once, child manifests and blobs only
// when asked for, each under the context of the call that asks. One
// unexported HTTP layer under the client holds the one retry loop, the
// registry origin's scheme, the token cache and the stall watchdog.
// [ParseReference] turns what users type into a client.
//
// Failures are typed: HTTP failures are [*ClientError], matched with
// [errors.Is] against [ErrNotFound], [ErrManifestUnknown], [ErrUnauthorized],
// [ErrDenied], [ErrTooManyRequests] and the others; local failures wrap
// [ErrInvalidReference], [ErrProtocol], [ErrStalled] and the data model's
// sentinels ([oci.ErrDigestMismatch], [oci.ErrTooLarge], ...).
// [ErrNotFound] is [oci.ErrNotFound]: one sentinel for "not there".
//
// Package [github.com/ocipull/registry/faults] wraps a Server with network
// and registry faults for testing clients against them.
package registry
