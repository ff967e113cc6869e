// Package registry is the pull side of the OCI Distribution Specification
// v1.1, as a client and a test server: a [Registry] (one registry origin:
// its connections, endpoints, tokens and settings) with light per-repository
// [Client] handles that read manifests and blobs and verify every byte, and
// a [Server] that serves refs from memory, spec-exact, for tests. Both share
// the data model of package [github.com/ocipull/registry/oci].
//
// The client negotiates Bearer tokens and Basic authentication from
// WWW-Authenticate challenges ([CredentialSource], [DockerConfig]), retries
// transient failures with a backoff/v4 policy honouring Retry-After, resumes
// broken blob downloads with Range requests, falls through its mirrors
// ([Endpoint], [Registry.LoadHostsDir] for containerd's hosts.toml and
// Docker's certs.d), and returns lazy refs: the manifest is read and
// verified at once, child manifests and blobs only when asked for, each
// under the context of the call that asks. [ParseReference] turns what
// users type into a [Registry] and a [Client].
//
// Failures are typed: HTTP failures are [*ClientError], matched with
// [errors.Is] against [ErrNotFound], [ErrManifestUnknown], [ErrUnauthorized],
// [ErrDenied], [ErrTooManyRequests] and the others; local failures wrap
// [ErrInvalidReference], [ErrProtocol], [ErrStalled] and the data model's
// sentinels ([oci.ErrDigestMismatch], [oci.ErrTooLarge], ...).
// [ErrNotFound] is [oci.ErrNotFound]: one sentinel for "not there".
//
// The other products: package [github.com/ocipull/registry/mirror] is the
// pull-through cache; [github.com/ocipull/registry/rootfs] makes an image's
// root filesystem; [github.com/ocipull/registry/ocitest] builds content and
// registries for tests in one call; [github.com/ocipull/registry/faults]
// wraps a Server with network and registry faults.
package registry
