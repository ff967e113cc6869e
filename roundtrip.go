package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/ocipull/registry/oci"
)

// One HTTP round trip of the client, below everything that decides what
// to send (transport.go: origins, redirects, challenges; auth.go: tokens):
// the request under the stall watchdog (see stallwatch.go), its failure
// classified as permanent or retryable, the body watched, traced, and
// read within a cap.

// readAllCapped reads r to its end, refusing a declared length (-1:
// unknown) or a body over limit with oci.ErrTooLarge. It is the one capped
// read of untrusted bodies.
func readAllCapped(r io.Reader, declared, limit int64) ([]byte, error) {
	if declared > limit {
		return nil, fmt.Errorf("%w: Content-Length %d exceeds the limit of %d bytes", oci.ErrTooLarge, declared, limit)
	}
	size := int64(512)
	if declared >= 0 {
		size = declared + 1
	}
	buf := make([]byte, 0, size)
	for {
		if int64(len(buf)) > limit {
			return nil, fmt.Errorf("%w: more than %d bytes", oci.ErrTooLarge, limit)
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):min(int64(cap(buf)), limit+1)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if int64(len(buf)) > limit {
				return nil, fmt.Errorf("%w: more than %d bytes", oci.ErrTooLarge, limit)
			}
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// watch starts the stall watchdog of one request: ctx is cancelled when
// no response headers arrive within the stall timeout, or later less than
// stallThreshold of body per timeout. With stall detection off, wd is nil
// (its methods then do nothing) and ctx is returned as it is.
func (t *transport) watch(ctx context.Context) (context.Context, *watchdog) {
	if t.stall < 0 {
		return ctx, nil
	}
	actx, cancel := context.WithCancel(ctx)
	wd := &watchdog{d: t.stall, cancel: cancel, watch: &t.stalls}
	wd.kick()
	t.stalls.add(wd)
	return actx, wd
}

// send does one round trip of req under a watchdog of its own.
func (t *transport) send(req *http.Request) (*http.Response, error) {
	parent := req.Context()
	ctx, wd := t.watch(parent)
	if wd != nil {
		req = req.WithContext(ctx)
	}
	return t.sendWatched(parent, req, wd)
}

// sendWatched does one round trip of req, whose context (derived from
// parent, the caller's) wd cancels when it fires: an error then wraps
// ErrStalled and is retryable unless parent ended. The returned body stops
// the watchdog when closed.
func (t *transport) sendWatched(parent context.Context, req *http.Request, wd *watchdog) (*http.Response, error) {
	start := time.Now()
	resp, err := t.hc.Do(req)
	if err != nil {
		fired := wd.fired()
		wd.release()
		if fired {
			err = fmt.Errorf("no response headers for %s: %w", wd.d, ErrStalled)
		}
		if t.trace != nil {
			// The cause alone: Method and URL are fields of their own.
			t.trace(RequestTrace{Method: req.Method, URL: redactURL(req.URL), Duration: time.Since(start), Err: stripURLError(err)})
		}
		return nil, networkError(parent, req, err)
	}
	t.rate.observe(resp, t.host)
	if t.trace != nil {
		resp.Body = &tracedBody{rc: resp.Body, start: start, fn: t.trace,
			rt: RequestTrace{Method: req.Method, URL: redactURL(req.URL), Status: resp.StatusCode}}
	}
	if wd != nil {
		wd.kick()
		resp.Body = &watchedBody{rc: resp.Body, wd: wd}
	}
	return resp, nil
}

// networkError wraps a transport failure: permanent for the caller's own
// cancellation, TLS verification failures, a plain-HTTP answer to TLS,
// refused dial targets and names that do not exist; retryable otherwise.
func networkError(ctx context.Context, req *http.Request, err error) error {
	werr := fmt.Errorf("%s %s: %w", req.Method, redactURL(req.URL), stripURLError(err))
	if ctx.Err() != nil {
		return backoff.Permanent(werr)
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) {
		return backoff.Permanent(werr)
	}
	// A plain-HTTP server will not learn TLS on a retry, and a refused
	// address will not become acceptable.
	if errors.Is(err, http.ErrSchemeMismatch) || errors.Is(err, ErrProtocol) {
		return backoff.Permanent(werr)
	}
	// A name that does not exist will not exist a second later either.
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return backoff.Permanent(werr)
	}
	return werr
}

// stripURLError drops *url.Error's own unredacted URL.
func stripURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
