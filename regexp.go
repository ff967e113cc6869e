package registry

import "regexp"

// The grammars of the OCI Distribution Specification v1.1 ("Pulling
// manifests", the <name> and <reference> rules) and of the OCI Image Format
// Specification's descriptor digests, as small building blocks.
const (
	// alphanumeric is one run of lower-case letters and digits.
	alphanumeric = `[a-z0-9]+`
	// separator joins alphanumeric runs inside a path component.
	separator = `(?:[._]|__|[-]+)`
	// pathComponent is alphanumeric runs joined by separators.
	pathComponent = alphanumeric + `(?:` + separator + alphanumeric + `)*`
	// repository is one or more path components joined by slashes.
	repository = pathComponent + `(?:/` + pathComponent + `)*`
	// tag is up to 128 characters, the first not a period or dash.
	tag = `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
	// digestAlgorithm is components joined by + . _ -, as in "sha256".
	digestAlgorithm = `[a-z0-9]+(?:[+._-][a-z0-9]+)*`
	// digestEncoded is the encoded part of a digest.
	digestEncoded = `[a-zA-Z0-9=_-]+`
	// digestPattern is algorithm:encoded.
	digestPattern = digestAlgorithm + `:` + digestEncoded
)

func anchored(s string) string { return `^` + s + `$` }

// Exported grammars, each anchored: they match a whole string or nothing.
var (
	// RepositoryRegexp matches a repository name such as "library/ubuntu".
	// Names are also limited to 255 characters ([MaxRepositoryLength]).
	RepositoryRegexp = regexp.MustCompile(anchored(repository))
	// TagRegexp matches a tag such as "v1.2.3".
	TagRegexp = regexp.MustCompile(anchored(tag))
	// DigestRegexp matches the digest grammar. The client further accepts
	// only the registered sha256 and sha512 algorithms with their lengths.
	DigestRegexp = regexp.MustCompile(anchored(digestPattern))
)

// MaxRepositoryLength caps a repository name, as clients commonly cap
// host plus name at 255 characters (distribution-spec, "Pulling manifests").
const MaxRepositoryLength = 255
