package mirror

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/internal/safetext"
	"github.com/ocipull/registry/internal/wire"
	"github.com/ocipull/registry/oci"
)

// outcomeKind is what the cache did for one request, as logged.
type outcomeKind string

const (
	outHit       outcomeKind = "hit"       // answered from the store
	outMiss      outcomeKind = "miss"      // fetched upstream for this request
	outCoalesced outcomeKind = "coalesced" // joined a fetch another request started
	outStale     outcomeKind = "stale"     // answered from the store, the upstream down
	outPassed    outcomeKind = "passed"    // an upstream answer passed on (a 404, a HEAD)
	outFailed    outcomeKind = "failed"    // an error answer; the cause is logged
	outRefused   outcomeKind = "refused"   // refused by the cache itself (auth, a cap, a bad request)
	outAborted   outcomeKind = "aborted"   // the response was cut before its end
)

// outcome is a handler's report: what happened and, for a failure, why.
type outcome struct {
	kind  outcomeKind
	cause error
}

// errDown means the upstream is marked down (see breaker).
type errDown struct{ cause string }

func (e *errDown) Error() string { return "upstream marked down after a failure: " + e.cause }

// upstreamFailed records a failed upstream request: counted, and the
// upstream marked down when the failure says it is.
func (c *Cache) upstreamFailed(up *upstream, err error) {
	if err == nil || errors.Is(err, context.Canceled) && c.ctx.Err() != nil {
		return
	}
	c.stats.upstreamErrors.Add(1)
	if isDown(err) {
		up.breaker.failed(safe(err.Error()))
	}
}

// isDown reports failures that mean the upstream cannot answer now: the
// network, a timeout, 5xx, 429. Not a 404, a refusal or a cancellation.
func isDown(err error) bool {
	var ce *registry.ClientError
	if errors.As(err, &ce) {
		return ce.Temporary()
	}
	var down *errDown
	if errors.As(err, &down) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	return !errors.Is(err, registry.ErrNotFound) && !errors.Is(err, registry.ErrUnauthorized) &&
		!errors.Is(err, registry.ErrDenied) && !errors.Is(err, context.Canceled) &&
		!errors.Is(err, oci.ErrDigestMismatch) && !errors.Is(err, oci.ErrSizeMismatch) &&
		!errors.Is(err, registry.ErrInvalidReference) && !errors.Is(err, oci.ErrTooLarge) &&
		!errors.Is(err, registry.ErrProtocol)
}

// fail answers a request that could not be served, with a generic code
// and message (never an upstream URL, a path or a helper's output: the
// cause goes to the log), and reports the outcome. kind names what was
// asked for: "manifest", "blob", "tags" or "referrers".
func (c *Cache) fail(w http.ResponseWriter, kind string, err error) outcome {
	var down *errDown
	switch {
	case errors.Is(err, registry.ErrNotFound):
		code, msg := wire.CodeNameUnknown, "repository name not known to the upstream"
		switch {
		case errors.Is(err, registry.ErrNameUnknown):
		case kind == "manifest":
			code, msg = wire.CodeManifestUnknown, "manifest unknown"
		case kind == "blob":
			code, msg = wire.CodeBlobUnknown, "blob unknown"
		}
		wire.WriteError(w, http.StatusNotFound, code, msg)
		return outcome{outPassed, err}
	case errors.Is(err, registry.ErrUnauthorized), errors.Is(err, registry.ErrDenied):
		wire.WriteError(w, http.StatusForbidden, wire.CodeDenied,
			"the upstream denied the cache access to this repository (it may not exist)")
	case errors.Is(err, errClientBusy):
		c.stats.refused.Add(1)
		w.Header().Set("Retry-After", "1")
		wire.WriteError(w, http.StatusTooManyRequests, wire.CodeTooManyRequests, "too many fetches started by this client")
		return outcome{outRefused, err}
	case errors.Is(err, errBusy):
		c.stats.refused.Add(1)
		w.Header().Set("Retry-After", "1")
		wire.WriteError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "the cache is busy; retry shortly")
		return outcome{outRefused, err}
	case errors.As(err, &down):
		w.Header().Set("Retry-After", "5")
		wire.WriteError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "the upstream is unavailable and the cache does not hold this "+kind)
	case errors.Is(err, oci.ErrDigestMismatch), errors.Is(err, oci.ErrSizeMismatch):
		wire.WriteError(w, http.StatusBadGateway, wire.CodeUnavailable, "the upstream's "+kind+" did not verify")
	case errors.Is(err, oci.ErrTooLarge):
		wire.WriteError(w, http.StatusBadGateway, wire.CodeUnavailable, "the upstream's "+kind+" is too large")
	case errors.Is(err, errStore):
		wire.WriteError(w, http.StatusInternalServerError, wire.CodeUnavailable, "the cache's store failed")
	case errors.Is(err, context.Canceled) && c.ctx.Err() != nil:
		wire.WriteError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "the cache is shutting down")
	case isDown(err):
		wire.WriteError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "the upstream is unavailable")
	default:
		wire.WriteError(w, http.StatusBadGateway, wire.CodeUnavailable, "the upstream request failed")
	}
	return outcome{outFailed, err}
}

// errStore wraps failures of the cache's own store.
var errStore = errors.New("store")

// retryAfter formats a wait for Retry-After.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(int((d + time.Second - 1) / time.Second))
}

// safe makes a string from an upstream, a client or the system fit for a
// log line or a terminal: control and format characters replaced, cut to
// a few hundred bytes.
func safe(s string) string { return safetext.String(s, 400) }
