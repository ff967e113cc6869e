package faults

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// CutAfter passes the response through but breaks the connection after n
// bytes of body (the headers, with the full Content-Length, go out first).
func CutAfter(n int64) Fault {
	return FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		cw := &cutWriter{ResponseWriter: w, left: n}
		defer cw.abortIfCut()
		next.ServeHTTP(cw, r)
	})
}

// StallAfter passes n bytes of body, then sends nothing for d (or until the
// client goes away), then breaks the connection. StallAfter(0, d) before
// headers stalls the whole response: see [Stall].
func StallAfter(n int64, d time.Duration) Fault {
	return FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		cw := &cutWriter{ResponseWriter: w, left: n, stall: d, ctxDone: r.Context().Done()}
		defer cw.abortIfCut()
		next.ServeHTTP(cw, r)
	})
}

// Drip passes after bytes of body at full speed, then sends the rest n bytes
// at a time, one burst every interval: a connection that never goes
// quiet but never gets anywhere either. It stops when the client goes away.
func Drip(after, n int64, every time.Duration) Fault {
	return FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		dw := &dripWriter{ResponseWriter: w, fast: after, n: n, every: every, ctxDone: r.Context().Done()}
		defer dw.abortIfGone()
		next.ServeHTTP(dw, r)
	})
}

// Stall sends nothing at all, not even headers, for d (or until the client
// goes away), then serves the request normally: a stalled server, or, for
// every request, a link's latency.
func Stall(d time.Duration) Fault {
	return FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Status answers with code and a registry error body instead of serving;
// retryAfter, when not empty, is sent as Retry-After (seconds or an HTTP date).
func Status(code int, retryAfter string) Fault {
	return FaultFunc(func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		errorCode := "UNSUPPORTED"
		if code == http.StatusTooManyRequests {
			errorCode = "TOOMANYREQUESTS"
		}
		body := fmt.Sprintf(`{"errors":[{"code":%q,"message":"injected fault"}]}`, errorCode)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(code)
		w.Write([]byte(body))
	})
}

// IgnoreRange serves the request as if it had no Range header (200, whole body).
func IgnoreRange() Fault {
	return FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		r.Header.Del("Range")
		next.ServeHTTP(w, r)
	})
}

// WrongContentRange answers ranges with a Content-Range that starts one
// byte later than what is sent.
func WrongContentRange() Fault {
	return mutateHeaders(func(h http.Header, status int) int {
		if cr := h.Get("Content-Range"); status == http.StatusPartialContent && strings.HasPrefix(cr, "bytes ") {
			var first, last, total int64
			if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &total); err == nil {
				h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first+1, last, total))
			}
		}
		return status
	})
}

// LieContentLength adds delta to the Content-Length the handler set. A
// positive delta promises bytes that never come (the connection closes
// early); a negative one cuts the body short behind a consistent header.
func LieContentLength(delta int64) Fault {
	return mutateHeaders(func(h http.Header, status int) int {
		if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil {
			h.Set("Content-Length", strconv.FormatInt(max(n+delta, 0), 10))
		}
		return status
	})
}

// DropHeader removes a response header, such as Docker-Content-Digest.
func DropHeader(name string) Fault {
	return mutateHeaders(func(h http.Header, status int) int { h.Del(name); return status })
}

// SetHeader sets a response header, such as a wrong Content-Type.
func SetHeader(name, value string) Fault {
	return mutateHeaders(func(h http.Header, status int) int { h.Set(name, value); return status })
}

// Corrupt flips one bit of the body's first byte: the right length, the
// wrong content.
func Corrupt() Fault {
	return FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		next.ServeHTTP(&corruptWriter{ResponseWriter: w}, r)
	})
}

// Oversize appends n bytes of junk to the body and drops Content-Length,
// so the body runs past what was described.
func Oversize(n int64) Fault {
	return FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		ow := &oversizeWriter{ResponseWriter: w}
		next.ServeHTTP(ow, r)
		if ow.status >= 200 && ow.status < 300 && r.Method != http.MethodHead {
			junk := bytes.Repeat([]byte("x"), 32<<10)
			for n := n; n > 0; {
				k := int64(len(junk))
				if k > n {
					k = n
				}
				if _, err := w.Write(junk[:k]); err != nil {
					return
				}
				n -= k
			}
		}
	})
}

// Redirect answers 307 to base plus the request's path and query, as
// registries do to send blob downloads to object storage.
func Redirect(base string) Fault {
	return FaultFunc(func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		target := strings.TrimSuffix(base, "/") + r.URL.RequestURI()
		http.Redirect(w, r, target, http.StatusTemporaryRedirect)
	})
}

// RejectAuthorization is a fault for the target of a redirect: a request
// that carries an Authorization header gets 400 and is counted in *leaks;
// others pass through.
func RejectAuthorization(leaks *int64) Fault {
	return FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Header.Get("Authorization") != "" {
			if leaks != nil {
				atomic.AddInt64(leaks, 1)
			}
			http.Error(w, "Authorization header leaked to a redirect target", http.StatusBadRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Throttle caps each response's body at bytesPerSecond, as object stores
// and CDNs cap each connection (a connection carries one response at a
// time, so this is a per-connection cap). It stops when the client goes
// away.
func Throttle(bytesPerSecond int64) Fault {
	return FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		tw := &throttleWriter{ResponseWriter: w, rate: bytesPerSecond, ctxDone: r.Context().Done()}
		next.ServeHTTP(tw, r)
	})
}
