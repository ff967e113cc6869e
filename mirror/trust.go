package mirror

import (
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// trust is what the cache knows of which upstream repository holds which
// content. Stored content is keyed by digest alone, so this is what keeps
// tenants apart: content is served for a repository only when that
// upstream repository is known to hold it.
//
//   - known: the content was fetched for the repository, or a HEAD
//     upstream confirmed it there. Known content is served from the store
//     at once.
//   - named: a manifest fetched (and verified) for the repository names
//     it, with the size the manifest states. That size is a hint for the
//     fetch (a wrong one fails the fetch, for that repository only, and
//     never touches stored content); named content not yet known is
//     confirmed with one HEAD before the store serves it, and served on
//     the manifest's word only while the upstream is down.
//
// Both are LRU maps of at most the configured entries each; a forgotten
// entry costs one HEAD.
type trust struct {
	known *lru[blobKey, struct{}]
	named *lru[blobKey, int64]
}

func newTrust(entries int) *trust {
	return &trust{known: newLRU[blobKey, struct{}](entries, 0), named: newLRU[blobKey, int64](entries, 0)}
}

func (t *trust) isKnown(k blobKey) bool {
	_, _, ok := t.known.get(k)
	return ok
}

func (t *trust) add(k blobKey) { t.known.put(k, struct{}{}) }

// nameAll records what a manifest fetched for the repository of k names.
func (t *trust) nameAll(up, repo string, ds []v1.Descriptor) {
	for _, d := range ds {
		t.named.put(blobKey{up, repo, d.Digest}, d.Size)
	}
}

// namedSize is the size a manifest of k's repository gave for k's digest.
func (t *trust) namedSize(k blobKey) (int64, bool) {
	n, _, ok := t.named.get(k)
	return n, ok
}

// forget drops what is known of d everywhere (it was removed from the
// store, or proven wrong).
func (t *trust) forget(d digest.Digest) {
	t.known.removeIf(func(k blobKey, _ struct{}) bool { return k.d == d })
}
