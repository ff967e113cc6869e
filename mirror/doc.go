// Package mirror is the pull-through cache: an [http.Handler] that serves
// the pull side of the distribution API from a [Store] (an OCI image
// layout by default) and fills it from upstream registries through
// [registry.Registry] handles, one per upstream, so that every repository
// of an upstream shares its connections and tokens.
//
// What a [Cache] guarantees, to its clients and to its operator:
//
//   - One upstream fetch per blob per upstream repository, however many
//     clients ask: the first request starts it, its bytes stream to every
//     request for that blob as they land, and the blob's last byte is
//     held back until the whole blob is verified (a range that ends before
//     it completes as soon as its bytes landed: no client can assemble a
//     blob that fails, and ranged clients do not stall on every chunk). A
//     fetch whose digest or size fails is cut mid-stream (the connection
//     aborted, never ended cleanly) and nothing of it is stored. No new
//     byte is read back from the disk: the store lands it (a large blob
//     with direct I/O, past the page cache), and the requests at the
//     landing's edge send it from a window in memory the landing's
//     reports fill; a request behind reads the landing's file, a warm one
//     the stored file, with sendfile.
//   - Content is served to a repository only when that upstream
//     repository is known to have it: fetched for it, named by a manifest
//     fetched for it, or confirmed with one HEAD upstream (remembered).
//     Content one tenant pulled is never revealed to another through a
//     repository that does not have it, not even by HEAD.
//   - Stored content is deleted only when it is proven wrong (it does not
//     hash to its name, read under a live request); a parse failure, a
//     cancellation or an I/O error leaves it in place.
//   - Nothing a request can grow is unbounded: per-repository knowledge,
//     tags and lists live in capped LRU maps; upstream fetches are capped
//     overall and per client; a fetch nobody follows any more is
//     cancelled after a grace period; a client that stops reading is cut.
//     The newest bytes of large landings are kept in memory for their
//     followers in at most 4 windows of 16 MiB, cache-wide (see
//     window.go); each request sending from one copies through 256 KiB.
//   - When an upstream fails (refused, timed out, 5xx, 429) it is marked
//     down for a back-off: stale tags and stored content answer at once
//     with a Warning, and what the store cannot answer fails fast with
//     503 UNAVAILABLE.
//   - A referrers answer is stored with the content, as the referrers tag
//     schema stores it (an image index tagged "sha256-<hex>" of the
//     subject in that repository, named in index.json), so it is answered
//     after a restart while the upstream is down, for that repository
//     only. A client asking for that tag by name gets the stored index.
//   - Clients see generic error codes and messages, never upstream URLs,
//     paths or credential-helper output; the log gets every cause.
//   - A panic while serving or fetching fails that request or that fetch,
//     is logged with its stack, and never ends the process.
package mirror
