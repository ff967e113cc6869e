package registry

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/ocipull/registry/oci"
)

// maxListPage caps one page of a tag, catalog or referrers list. Pages are
// JSON lists of short names; 4 MiB matches the manifest limit.
const maxListPage = oci.MaxManifestSize

// Default bounds of one listing (Registry.MaxPages, Registry.MaxListItems).
// Docker Hub's largest repositories have tens of thousands of tags, at
// 100 or more a page; 10,000 pages end an endless listing within a minute
// on a small machine, and the loop detector holds 8 bytes a page.
const (
	defaultMaxPages     = 10_000
	defaultMaxListItems = 1_000_000
)

type listLimits struct{ pages, items int }

func newListLimits(pages, items int) listLimits {
	if pages <= 0 {
		pages = defaultMaxPages
	}
	if items <= 0 {
		items = defaultMaxListItems
	}
	return listLimits{pages, items}
}

// pager walks one paginated listing.
type pager struct {
	t           *transport
	scope       string
	field       string
	crossOrigin bool

	seen  map[uint64]bool // hashes of the normalised URLs read so far
	pages int
	items int
	last  string // the "last" parameter of the page just read
}

// run fetches pages from first on, yielding their items, until no Link
// rel="next" remains, the consumer stops, or a bound or rule is broken.
func (p *pager) run(ctx context.Context, first *url.URL, yield func(string, error) bool) {
	p.seen = map[uint64]bool{}
	for next := first; next != nil; {
		next = p.t.applyOrigin(next)
		if err := p.admit(next); err != nil {
			yield("", err)
			return
		}
		names, link, err := p.fetch(ctx, next)
		if err != nil {
			yield("", err)
			return
		}
		if p.items += len(names); p.items > p.t.limits.items {
			yield("", fmt.Errorf("GET %s: %w: more than %d items in one listing (MaxListItems)", redactURL(next), oci.ErrTooLarge, p.t.limits.items))
			return
		}
		for _, n := range names {
			if !yield(n, nil) {
				return
			}
		}
		cur := p.t.applyOrigin(next)
		if next, err = parseNextLink(link, cur); err == nil && next != nil {
			err = p.checkLink(cur, next)
		}
		if err != nil {
			yield("", fmt.Errorf("GET %s: %w", redactURL(cur), err))
			return
		}
	}
}

// admit counts a page and refuses one already read (by normalised URL)
// or one over MaxPages.
func (p *pager) admit(u *url.URL) error {
	if p.pages++; p.pages > p.t.limits.pages {
		return fmt.Errorf("GET %s: %w: more than %d pages in one listing (MaxPages)", redactURL(u), oci.ErrTooLarge, p.t.limits.pages)
	}
	h := urlHash(u)
	if p.seen[h] {
		return fmt.Errorf("%w: pagination loops back to %s", ErrProtocol, redactURL(u))
	}
	p.seen[h] = true
	return nil
}

// checkLink applies the Link rules: the next page stays on the origin the
// client is using (scheme, host and port; never from HTTPS to plain HTTP,
// even with AllowCrossOriginLinks), and its "last" advances.
func (p *pager) checkLink(cur, next *url.URL) error {
	next = p.t.applyOrigin(next)
	if cur.Scheme == "https" && next.Scheme != "https" {
		return fmt.Errorf("%w: refusing Link from https to %s", ErrProtocol, redactURL(next))
	}
	if !p.crossOrigin && !sameHostPort(next, p.t.origin()) {
		return fmt.Errorf("%w: refusing Link to another origin %s (AllowCrossOriginLinks permits it)", ErrProtocol, redactURL(next))
	}
	last := next.Query().Get("last")
	if last != "" && p.last != "" && last <= p.last {
		return fmt.Errorf("%w: pagination does not advance: last=%q after last=%q", ErrProtocol, printable(last, 80), printable(p.last, 80))
	}
	if last != "" {
		p.last = last
	}
	return nil
}

// fetch reads one page: its names and its Link header.
func (p *pager) fetch(ctx context.Context, u *url.URL) ([]string, string, error) {
	req := &request{method: http.MethodGet, url: u, accept: "application/json", scope: p.scope}
	b, header, err := p.t.get(ctx, req, maxListPage, "GET "+redactURL(u))
	if err != nil {
		return nil, "", err
	}
	names, err := decodeNames(b, p.field)
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: %w: not a list: %v", redactURL(u), ErrProtocol, err)
	}
	return names, strings.Join(header.Values("Link"), ", "), nil
}

// decodeNames reads the string list in field of a JSON object.
func decodeNames(b []byte, field string) ([]string, error) {
	var page map[string]json.RawMessage
	if err := json.Unmarshal(b, &page); err != nil {
		return nil, err
	}
	var names []string
	if raw, ok := page[field]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &names); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// normalizeListURL renders u in a canonical form for loop detection:
// lower-case scheme and host, default port dropped, path cleaned of empty
// segments, query parameters sorted with empty pairs dropped (so
// "?last=x&", "?last=x&&" and "?&last=x" are one URL).
func normalizeListURL(u *url.URL) string {
	host := strings.ToLower(u.Host)
	if (u.Scheme == "https" && strings.HasSuffix(host, ":443")) || (u.Scheme == "http" && strings.HasSuffix(host, ":80")) {
		host = host[:strings.LastIndexByte(host, ':')]
	}
	var pairs []string
	for _, kv := range strings.FieldsFunc(u.RawQuery, func(r rune) bool { return r == '&' || r == ';' }) {
		k, v, _ := strings.Cut(kv, "=")
		k, _ = url.QueryUnescape(k)
		v, _ = url.QueryUnescape(v)
		if k == "" {
			continue
		}
		pairs = append(pairs, url.QueryEscape(k)+"="+url.QueryEscape(v))
	}
	sort.Strings(pairs)
	path := u.EscapedPath()
	for strings.Contains(path, "//") {
		path = strings.ReplaceAll(path, "//", "/")
	}
	return strings.ToLower(u.Scheme) + "://" + host + path + "?" + strings.Join(pairs, "&")
}

// urlHash is 64 bits of the normalised URL's SHA-256: the loop detector
// keeps these, not the URLs, so its memory is bounded by the page cap.
func urlHash(u *url.URL) uint64 {
	sum := sha256.Sum256([]byte(normalizeListURL(u)))
	return binary.BigEndian.Uint64(sum[:8])
}
