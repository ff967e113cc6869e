package mirror

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/opencontainers/go-digest"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/internal/wire"
	"github.com/ocipull/registry/oci"
)

// Config configures a [Cache]. Every field's zero value works, but
// Upstreams must name at least one.
type Config struct {
	// Upstreams are the registries the cache fills from, keyed by the
	// name clients use for them (an ns value such as "docker.io" or
	// "ghcr.io"); the key "" is the upstream for requests that name none,
	// and also answers ns naming its own host.
	Upstreams map[string]Upstream
	// TagTTL is how long a tag is served from the store before it is
	// revalidated upstream with one HEAD. Zero means 5 minutes.
	TagTTL time.Duration
	// ListTTL is how long a tag list or referrers answer is reused, and
	// how long a 404 for a tag or repository is remembered. Zero means
	// 30 seconds.
	ListTTL time.Duration
	// MaxSize caps the store's content and landings, in bytes; the least
	// recently used content goes first. Zero means no cap.
	MaxSize int64
	// Auth, when not nil, makes the cache's clients authenticate, as on a
	// [registry.Server]. Scope names include the upstream:
	// "repository:docker.io/library/alpine:pull" (the upstream's registry
	// name, then the repository).
	Auth *registry.ServerAuth
	// Log, when not nil, gets one record per request (with its outcome: hit, miss, coalesced, stale, passed, failed, refused or aborted) and
	// one per failure of the cache's own work.
	Log *slog.Logger
	// MaxFetches caps the blob fetches running upstream at once; a request
	// that would start one more gets 503 with Retry-After. Zero means 64.
	MaxFetches int
	// MaxFetchesPerClient caps the fetches one client address may have
	// started and not finished; beyond it, 429. Zero means 16.
	MaxFetchesPerClient int
	// AbandonAfter is how long a blob fetch goes on once no request
	// follows it; then it is cancelled (its landing stays, for a later
	// fetch to resume). Zero means 30 seconds.
	AbandonAfter time.Duration
	// WriteTimeout is how long one write to a client may take: a client
	// that accepts nothing for that long is cut. Zero means 30 seconds.
	WriteTimeout time.Duration
	// MaxEntries caps each of the cache's memories (what each upstream
	// repository is known to hold, tags, lists, negative answers). Zero
	// means 100,000.
	MaxEntries int
	// MaxTags caps the tags recorded in the store's index.json; the least
	// recently used go first. Zero means 10,000.
	MaxTags int
	// PrefetchReferrers makes the cache fetch, in the background, the
	// referrers of every manifest it fetches for a client (signatures,
	// SBOMs, attestations: each referrer manifest and the list, stored as
	// any client request would store them), so that they are served from
	// the store, the upstream down too. Referrers of referrers are not
	// followed; at most 4 prefetches run at once (more are skipped) and
	// each fetches at most 64 referrer manifests.
	PrefetchReferrers bool
	// MetricsOnAdminOnly keeps /metrics off the serving handler (it is
	// then served by [Cache.Admin] alone, on a listener of its own).
	MetricsOnAdminOnly bool
	// Metrics, when not nil, are the counters and histograms the cache
	// reports on /metrics, shared with other caches given the same (the
	// generations of a server that reloads its configuration): each
	// continues the others' counts instead of starting from zero. Nil: the
	// cache's own.
	Metrics *Metrics
}

// Upstream is a registry a [Cache] fills its store from.
type Upstream struct {
	// URL is the registry's base URL: "https://registry-1.docker.io",
	// "http://127.0.0.1:5000" for a plain-HTTP one.
	URL string
	// Credentials supplies the cache's credentials for this upstream
	// alone; nil means anonymous.
	Credentials registry.CredentialSource
	// Transport, when not nil, replaces the upstream handle's own
	// transport (TLSConfig and DialTimeout must then be unset).
	Transport http.RoundTripper
	// TLSConfig configures TLS to the upstream (a private CA, a client
	// certificate).
	TLSConfig *tls.Config
	// DialTimeout bounds each connection attempt. Zero means 3 seconds.
	DialTimeout time.Duration
	// Timeout bounds one metadata request (a tag HEAD, a manifest, a
	// list) made for a client, and the wait for a blob's response
	// headers. Zero means 10 seconds.
	Timeout time.Duration
	// DownFor is the first back-off after the upstream fails; it doubles
	// with each failure in a row, up to 16 times it. Zero means 5
	// seconds.
	DownFor time.Duration
	// NoRanges turns ranged fetching off (for registries that meter
	// requests): each blob is one stream.
	NoRanges bool
	// MaxConns caps the connections to the upstream, shared by every
	// repository fetched from it (ignored with Transport). Zero means 16.
	MaxConns int
	// TagTTL replaces Config.TagTTL for this upstream. Zero means
	// Config.TagTTL.
	TagTTL time.Duration
	// ImmutableTags are patterns (path.Match syntax: "v*", "sha256-*",
	// "1.2.?") of tags that never change upstream: once stored, a
	// matching tag is served from the store without revalidation.
	ImmutableTags []string
}

// Cache is a pull-through cache (see the package documentation). Make one
// with [New] or [Open], serve it, and [Cache.Close] it.
type Cache struct {
	cfg       Config
	store     Store
	upstreams map[string]*upstream // by key (RegistryName of the configured key)
	def       *upstream            // the "" upstream, or nil
	ctx       context.Context      // the cache's lifetime: fetches run under it
	cancel    context.CancelFunc
	stats     *stats    // cfg.Metrics's, or its own
	started   time.Time // when New made it (process_start_time_seconds)
	log       *slog.Logger
	idPrefix  string        // of the request ids it makes
	idSeq     atomic.Uint64 // their sequence

	manifests   group[string, manifestResult] // manifest and tag fetches in flight
	lists       group[string, *listEntry]     // tag list and referrers fetches in flight
	confirms    group[blobKey, struct{}]      // HEADs confirming an upstream repository holds content
	flights     flights
	windows     windows   // of the flights' newest bytes, at most maxWindows
	followBufs  sync.Pool // *[]byte of followBuffer bytes, one per follower sending from a window
	acct        *accounting
	trust       *trust
	tags        *tagStore
	prefetching chan struct{} // slots of the referrers prefetches running
	listCache   *lru[string, *listEntry]
	negative    *lru[string, struct{}]      // 404s for tags and repositories
	mediaTypes  *lru[digest.Digest, string] // of manifests, as their upstream served them
}

// Open opens (creating it where needed) an OCI image layout at dir as the
// store of a new Cache.
func Open(dir string, cfg Config) (*Cache, error) {
	l, err := oci.CreateLayout(dir)
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	return New(LayoutStore{l}, cfg)
}

// New returns a cache filling store from cfg.Upstreams. It reads what the
// store holds (sizes for the cap, tags) before it returns.
func New(store Store, cfg Config) (*Cache, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("mirror: no upstream configured")
	}
	cfg = withDefaults(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cache{cfg: cfg, store: store, upstreams: map[string]*upstream{}, ctx: ctx, cancel: cancel,
		log:         cfg.Log,
		started:     time.Now(),
		trust:       newTrust(cfg.MaxEntries),
		listCache:   newLRU[string, *listEntry](cfg.MaxEntries, 0),
		negative:    newLRU[string, struct{}](cfg.MaxEntries, cfg.ListTTL),
		mediaTypes:  newLRU[digest.Digest, string](cfg.MaxEntries, 0),
		prefetching: make(chan struct{}, maxPrefetches),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
		c.cfg.Metrics = cfg.Metrics
	}
	c.stats = &cfg.Metrics.s
	var id [6]byte
	rand.Read(id[:])
	c.idPrefix = hex.EncodeToString(id[:])
	c.flights.init(cfg.MaxFetches, cfg.MaxFetchesPerClient)
	c.windows.init()
	c.followBufs.New = func() any { b := make([]byte, followBuffer); return &b }
	for key, ucfg := range cfg.Upstreams {
		up, err := c.newUpstream(key, ucfg)
		if err != nil {
			cancel()
			return nil, err
		}
		if _, dup := c.upstreams[up.key]; dup {
			cancel()
			return nil, fmt.Errorf("mirror: upstream %q configured twice", key)
		}
		c.upstreams[up.key] = up
		if up.key == "" {
			c.def = up
		}
	}
	c.acct = newAccounting(c)
	if err := c.acct.load(ctx); err != nil {
		cancel()
		return nil, err
	}
	tags, err := newTagStore(ctx, c)
	if err != nil {
		cancel()
		return nil, err
	}
	c.tags = tags
	return c, nil
}

func withDefaults(cfg Config) Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.TagTTL, 5*time.Minute)
	def(&cfg.ListTTL, 30*time.Second)
	def(&cfg.AbandonAfter, 30*time.Second)
	def(&cfg.WriteTimeout, 30*time.Second)
	if cfg.MaxFetches <= 0 {
		cfg.MaxFetches = 64
	}
	if cfg.MaxFetchesPerClient <= 0 {
		cfg.MaxFetchesPerClient = 16
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100_000
	}
	if cfg.MaxTags <= 0 {
		cfg.MaxTags = 10_000
	}
	return cfg
}

// Close cancels the fetches in flight (their landings stay, to be
// resumed) and writes the tags not yet recorded. The cache must not serve
// afterwards.
func (c *Cache) Close() error {
	c.cancel()
	c.flights.wait()
	err := c.tags.close()
	for _, up := range c.upstreams {
		up.reg.CloseIdleConnections()
	}
	return err
}

// upstream is a configured Upstream, with its registry handle.
type upstream struct {
	key       string // the ns it answers to ("" for the default)
	name      string // its registry name, as in scopes and index names
	reg       *registry.Registry
	timeout   time.Duration
	tagTTL    time.Duration
	immutable []string // tag patterns never revalidated
	breaker   breaker
	latency   *histogram // of its requests (shared through Metrics)
}

// isImmutable reports whether tag matches one of the upstream's
// ImmutableTags patterns.
func (up *upstream) isImmutable(tag string) bool {
	for _, p := range up.immutable {
		if ok, _ := path.Match(p, tag); ok {
			return true
		}
	}
	return false
}

func (c *Cache) newUpstream(key string, cfg Upstream) (*upstream, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("mirror: upstream %q: want a URL https://host[:port] or http://host[:port]", safe(key))
	}
	if cfg.Transport != nil && (cfg.TLSConfig != nil || cfg.DialTimeout != 0) {
		return nil, fmt.Errorf("mirror: upstream %q: TLSConfig and DialTimeout cannot be combined with Transport", safe(key))
	}
	// Named by its key (the ns clients use for it), or by its host when
	// it is the default.
	up := &upstream{key: registry.RegistryName(key), name: registry.RegistryName(key), timeout: cfg.Timeout}
	if up.name == "" {
		up.name = registry.RegistryName(u.Host)
	}
	up.latency = c.cfg.Metrics.upstreamLatency(up.key, up.name)
	if up.timeout <= 0 {
		up.timeout = 10 * time.Second
	}
	up.tagTTL = cfg.TagTTL
	if up.tagTTL <= 0 {
		up.tagTTL = c.cfg.TagTTL
	}
	for _, p := range cfg.ImmutableTags {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			return nil, fmt.Errorf("mirror: upstream %q: immutable tag pattern %q: %v", safe(key), safe(p), path.ErrBadPattern)
		}
	}
	up.immutable = slices.Clone(cfg.ImmutableTags)
	downFor := cfg.DownFor
	if downFor <= 0 {
		downFor = 5 * time.Second
	}
	up.breaker = breaker{min: downFor, max: 16 * downFor, now: time.Now}
	dial := cfg.DialTimeout
	if dial <= 0 && cfg.Transport == nil {
		dial = 3 * time.Second
	}
	ranges := 0
	if cfg.NoRanges {
		ranges = 1
	}
	conns := cfg.MaxConns
	if conns <= 0 {
		conns = 16
	}
	up.reg = &registry.Registry{
		Scheme: u.Scheme, Host: u.Host, Credentials: cfg.Credentials, Transport: cfg.Transport,
		TLSConfig: cfg.TLSConfig, DialTimeout: dial, UserAgent: "ocipull-mirror",
		GetBackOff: upstreamBackOff, StallTimeout: up.timeout, RangeParallelism: ranges, MaxConnsPerHost: conns,
		Trace: func(t registry.RequestTrace) { c.traceUpstream(up, t) },
	}
	if ep, err := registry.ParseEndpoint(cfg.URL); err != nil || ep.Host != u.Host {
		return nil, fmt.Errorf("mirror: upstream %q: invalid host", safe(key))
	}
	return up, nil
}

// upstreamBackOff is the retry policy toward upstreams: short, because a
// request waits on it and a stale answer beats a slow one (at most 2
// retries, 100 ms doubling, 2 s in all; a blob fetch that makes progress
// starts it over).
func upstreamBackOff() backoff.BackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     100 * time.Millisecond,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         time.Second,
		MaxElapsedTime:      2 * time.Second,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	return backoff.WithMaxRetries(b, 2)
}

// target is what a request names: an upstream and a repository on it.
type target struct {
	up   *upstream
	repo string
}

// scope is the token scope a client needs for t: the repository named
// with its upstream, so that a grant for one upstream's repository says
// nothing of another's.
func (t target) scope() string { return "repository:" + t.qualified() + ":pull" }

// qualified is the repository named with its upstream: "ghcr.io/org/app".
func (t target) qualified() string { return t.up.name + "/" + t.repo }

// client is the upstream handle for t's repository (light: connections
// and tokens are the upstream's).
func (t target) client() *registry.Client { return t.up.reg.Repository(t.repo) }

// blobKey names a blob as fetched for one upstream repository.
type blobKey struct {
	up, repo string
	d        digest.Digest
}

func (t target) blob(d digest.Digest) blobKey { return blobKey{t.up.key, t.repo, d} }

// errNoUpstream means a request names no configured upstream.
var errNoUpstream = errors.New("no such upstream")

// route picks the upstream and repository a request means: ns (from the
// query) must name a configured upstream or the default's own registry;
// else a first path component naming a configured upstream is one; else
// the default. Docker Hub's one-component names get "library/". ns is a
// key into the configuration, never a dial target.
func (c *Cache) route(ns, name string) (target, error) {
	var up *upstream
	switch {
	case ns != "":
		key := registry.RegistryName(ns)
		up = c.upstreams[key]
		if up == nil && c.def != nil && key == c.def.name {
			up = c.def
		}
	default:
		if first, rest, ok := strings.Cut(name, "/"); ok && strings.ContainsAny(first, ".:") && first == strings.ToLower(first) {
			if u := c.upstreams[registry.RegistryName(first)]; u != nil && u.key != "" {
				up, name = u, rest
			}
		}
		if up == nil {
			up = c.def
		}
	}
	if up == nil {
		return target{}, errNoUpstream
	}
	name = registry.RepositoryName(up.name, name)
	if !wire.ValidRepository(name) {
		return target{}, registry.ErrInvalidReference
	}
	return target{up: up, repo: name}, nil
}
