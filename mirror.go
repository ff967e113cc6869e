package registry

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry/oci"
)

// Mirror is a pull-through cache: an [http.Handler] that serves the pull
// and discovery API of the distribution spec from a store, and fills the
// store from upstream registries through a [Client] (auth, retries,
// resumes, verification) when a request misses. The store is an OCI image
// layout directory ([oci.Layout]), so a cache directory is also a layout
// that `ocipull serve` and other tools read.
//
// What it guarantees:
//   - One upstream fetch per blob, however many clients ask at once: the
//     first request for a missing blob starts the fetch, its bytes stream
//     to that client as they land in the store, and every concurrent
//     request for the same digest (from any repository, GET, HEAD or
//     Range) attaches to the fetch in flight and streams from it as it
//     grows. Manifests by digest are coalesced the same way.
//   - Only verified content enters the store. A blob whose digest or size
//     fails is not stored, and every stream serving it is cut (the
//     connection is aborted, never ended cleanly), so clients fail or
//     retry; the next request fetches afresh. Stored blobs are verified
//     again before they are first served after a restart.
//   - Tags are served from the store for TagTTL, then revalidated with a
//     HEAD (which Docker Hub does not count against pull limits) and
//     fetched again only when the digest changed. When the upstream is
//     unreachable or answers 5xx or 429, stale tags and everything stored
//     are still served, with a Warning header; an upstream 404 for a tag
//     passes through. Tag lists and referrers are passed through and kept
//     for ListTTL, and served from the last answer when the upstream is
//     down.
//   - Several upstreams behind one endpoint: the ns query parameter
//     (distribution spec, "Registry Proxying"; containerd sends it) or a
//     first path component naming a configured upstream
//     (/v2/<upstream>/<repository>/...) selects one; Docker Hub's names
//     normalise (ns=docker.io, library/). ns is a key into Upstreams,
//     never a dial target: an unconfigured ns gets 404 NAME_UNKNOWN and
//     no upstream traffic.
//   - Its clients authenticate with Auth when it is set; their
//     Authorization is never forwarded upstream, and upstream credentials
//     never reach them. It dials only the configured upstreams (and the
//     token realms and redirects they answer with).
//   - With MaxSize set, the least recently served blobs and manifests are
//     removed when the store grows past it; nothing being fetched or
//     served is removed, and a removed blob that a stored manifest still
//     needs is fetched again on demand.
//   - kill -9 at any moment leaves nothing unverified servable: content is
//     renamed into place only once verified, and a partial fetch resumes
//     on the next request. Several mirror processes may share one store
//     directory (the layout's file locks): each blob is fetched by one of
//     them, and the others stream it from the growing partial file.
//
// /metrics answers in the Prometheus text format (see the README for the
// metric names). Make a Mirror with [NewMirror], set the optional fields,
// then serve it; [Mirror.Close] cancels the fetches in flight.
type Mirror struct {
	// TagTTL is how long a tag is served from the store before it is
	// revalidated upstream. Zero means 5 minutes.
	TagTTL time.Duration
	// ListTTL is how long a tag list or referrers answer is reused. Zero
	// means 30 seconds.
	ListTTL time.Duration
	// MaxSize caps the store's blobs and manifests, in bytes. Zero means
	// no cap.
	MaxSize int64
	// Auth, when not nil, makes the mirror's own clients authenticate, as
	// on a [Server].
	Auth *ServerAuth
	// Log, when not nil, is given one line per request: method, path,
	// status, bytes, time and what the cache did.
	Log func(line string)

	store     *oci.Layout
	upstreams map[string]*upstream
	ctx       context.Context // the mirror's lifetime: fetches run under it
	cancel    context.CancelFunc
	stats     mirrorStats

	mu        sync.Mutex
	clients   map[string]*Client           // per upstream key and repository
	flights   map[digest.Digest]*flight    // blobs being fetched
	calls     map[string]*call             // manifests and tags being fetched
	tags      map[string]*tagEntry         // by index name (host/repository:tag)
	lists     map[string]*listEntry        // tag lists and referrers
	known     map[digest.Digest]int64      // blob sizes learnt from manifests
	mediaType map[digest.Digest]string     // of stored manifests
	entries   map[digest.Digest]*storeItem // the store's content, for eviction
	size      int64                        // bytes in entries
}

// Upstream is a registry a [Mirror] fills its store from.
type Upstream struct {
	// URL is the registry's base URL: "https://registry-1.docker.io",
	// "http://127.0.0.1:5000" for a plain-HTTP one.
	URL string
	// Credentials supplies the mirror's credentials for this upstream;
	// nil means anonymous.
	Credentials CredentialSource
	// Transport, when not nil, replaces the client's own transport.
	Transport http.RoundTripper
}

// upstream is a configured Upstream, parsed.
type upstream struct {
	key    string // the ns it answers to ("" for the default)
	scheme string
	host   string
	cfg    Upstream
	hub    bool              // Docker Hub: one-component names get library/
	rt     http.RoundTripper // shared by its clients (set under Mirror.mu)
}

// NewMirror opens (creating it where needed) the store at dir and returns
// a mirror filling it from upstreams. The keys of upstreams are the
// registry names clients use (ns values such as "docker.io" or
// "ghcr.io"); the key "" is the upstream for requests that name none.
func NewMirror(dir string, upstreams map[string]Upstream) (*Mirror, error) {
	if len(upstreams) == 0 {
		return nil, fmt.Errorf("mirror: no upstream configured")
	}
	store, err := oci.CreateLayout(dir)
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mirror{store: store, upstreams: map[string]*upstream{}, ctx: ctx, cancel: cancel,
		clients: map[string]*Client{}, flights: map[digest.Digest]*flight{}, calls: map[string]*call{},
		tags: map[string]*tagEntry{}, lists: map[string]*listEntry{}, known: map[digest.Digest]int64{},
		mediaType: map[digest.Digest]string{}, entries: map[digest.Digest]*storeItem{}}
	for key, cfg := range upstreams {
		up, err := parseUpstream(key, cfg)
		if err != nil {
			cancel()
			return nil, err
		}
		if _, dup := m.upstreams[up.key]; dup {
			cancel()
			return nil, fmt.Errorf("mirror: upstream %q configured twice", key)
		}
		m.upstreams[up.key] = up
	}
	if err := m.loadStore(); err != nil {
		cancel()
		return nil, err
	}
	return m, nil
}

func parseUpstream(key string, cfg Upstream) (*upstream, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil {
		return nil, fmt.Errorf("mirror: upstream %q: URL %q: want https://host[:port] or http://host[:port]", key, printable(cfg.URL, 120))
	}
	if err := validateHost(u.Host); err != nil {
		return nil, fmt.Errorf("mirror: upstream %q: %w", key, err)
	}
	k := normalizeNS(key)
	hub := k == "docker.io" || normalizeNS(u.Host) == "docker.io"
	return &upstream{key: k, scheme: u.Scheme, host: u.Host, cfg: cfg, hub: hub}, nil
}

// normalizeNS lower-cases a registry name and folds Docker Hub's names
// into "docker.io", as clients and containerd name it.
func normalizeNS(ns string) string {
	ns = strings.ToLower(strings.TrimSpace(ns))
	switch ns {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return ns
}

// Close cancels the fetches in flight; the store stays consistent (a
// partial fetch resumes later). The mirror must not serve afterwards.
func (m *Mirror) Close() error {
	m.cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, up := range m.upstreams {
		if c, ok := up.rt.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
	return nil
}

// route picks the upstream and its repository name for a request naming
// name, with ns from the query: ns must be configured; else a first path
// component naming a configured upstream is one; else the default.
func (m *Mirror) route(ns, name string) (*upstream, string, error) {
	var up *upstream
	switch {
	case ns != "":
		up = m.upstreams[normalizeNS(ns)]
		if up == nil {
			return nil, "", fmt.Errorf("no upstream configured for ns=%s", printable(ns, 80))
		}
	default:
		if first, rest, ok := strings.Cut(name, "/"); ok && strings.ContainsAny(first, ".:") {
			if u := m.upstreams[normalizeNS(first)]; u != nil && first == strings.ToLower(first) {
				up, name = u, rest
			}
		}
		if up == nil {
			up = m.upstreams[""]
		}
		if up == nil {
			return nil, "", fmt.Errorf("no default upstream: name one with ns= or /v2/<upstream>/<repository>/")
		}
	}
	if up.hub && !strings.Contains(name, "/") {
		name = "library/" + name
	}
	if err := validateRepository(name); err != nil {
		return nil, "", err
	}
	return up, name, nil
}

// client is the mirror's client for repo on up, one per pair, kept so
// that token caches and connections are reused.
func (m *Mirror) client(up *upstream, repo string) *Client {
	key := up.key + "\x00" + repo
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.clients[key]; c != nil {
		return c
	}
	if up.rt == nil {
		rt := up.cfg.Transport
		if rt == nil {
			// With the dialled-address check of token realms and
			// redirects, as a Client's own transport has.
			rt = tunedTransport(0, 0, dialControlFor(up.host))
		}
		// One transport per upstream: its repositories share connections.
		up.rt = &countingTransport{rt: rt, stats: &m.stats}
	}
	c := (&Registry{Scheme: up.scheme, Host: up.host, Credentials: up.cfg.Credentials,
		Transport: up.rt, UserAgent: "ocipull-mirror", GetBackOff: mirrorBackOff}).Repository(repo)
	m.clients[key] = c
	return c
}

// indexName is the name a tag of up's repo has in the store's index.json:
// host/repository:tag, so tags of different upstreams never collide.
func (up *upstream) indexName(repo, tag string) string {
	host := up.host
	if up.hub {
		host = "docker.io"
	}
	return host + "/" + repo + ":" + tag
}

// mirrorBackOff is the retry policy of the mirror's upstream clients:
// shorter than a client's own, because a request waits on it, and a
// stale answer beats a slow one (at most 3 retries, 100 ms doubling, 5 s
// in all; a blob fetch that makes progress starts it over).
func mirrorBackOff() backoff.BackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     100 * time.Millisecond,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         time.Second,
		MaxElapsedTime:      5 * time.Second,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	return backoff.WithMaxRetries(b, 3)
}
