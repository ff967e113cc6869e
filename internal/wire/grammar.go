package wire

import (
	"regexp"

	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry/oci"
)

// The grammars of the OCI Distribution Specification v1.1 ("Pulling
// manifests", the <name> and <reference> rules), as small building blocks.
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

	// RepositoryGrammar is the repository rule, for error messages.
	RepositoryGrammar = "[a-z0-9]+((.|_|__|-+)[a-z0-9]+)*(/...)*"
)

// MaxRepositoryLength caps a repository name, as clients commonly cap
// host plus name at 255 characters (distribution-spec, "Pulling manifests").
const MaxRepositoryLength = 255

// The grammars, each anchored: they match a whole string or nothing.
var (
	repositoryRegexp = regexp.MustCompile(`^` + repository + `$`)
	// TagRegexp matches a tag such as "v1.2.3".
	TagRegexp = regexp.MustCompile(`^` + tag + `$`)
)

// ValidRepository reports whether name is a repository name: the grammar
// and at most MaxRepositoryLength characters.
func ValidRepository(name string) bool {
	return len(name) <= MaxRepositoryLength && repositoryRegexp.MatchString(name)
}

// ValidTag reports whether t is a tag.
func ValidTag(t string) bool { return TagRegexp.MatchString(t) }

// ValidDigest reports whether d is a digest the project accepts
// ([oci.ValidateDigest]).
func ValidDigest(d string) bool {
	return oci.ValidateDigest(digest.Digest(d)) == nil
}
