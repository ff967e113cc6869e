package faults

import (
	"net/http"
	"time"
)

// cutWriter passes left bytes of body, then optionally stalls, then aborts.
type cutWriter struct {
	http.ResponseWriter
	left    int64
	cut     bool
	stall   time.Duration
	ctxDone <-chan struct{}
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.cut {
		return 0, http.ErrAbortHandler
	}
	if int64(len(p)) <= c.left {
		c.left -= int64(len(p))
		return c.ResponseWriter.Write(p)
	}
	n, _ := c.ResponseWriter.Write(p[:c.left])
	c.left = 0
	c.cut = true
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	if c.stall > 0 {
		t := time.NewTimer(c.stall)
		select {
		case <-t.C:
		case <-c.ctxDone:
		}
		t.Stop()
	}
	return n, http.ErrAbortHandler
}

// abortIfCut ends the handler so that net/http drops the connection
// without completing the response.
func (c *cutWriter) abortIfCut() {
	if c.cut {
		panic(http.ErrAbortHandler)
	}
}

// mutateHeaders returns a fault that edits headers (and may change the
// status) as the handler writes them.
func mutateHeaders(f func(h http.Header, status int) int) Fault {
	return FaultFunc(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		next.ServeHTTP(&headerWriter{ResponseWriter: w, f: f}, r)
	})
}

type headerWriter struct {
	http.ResponseWriter
	f     func(http.Header, int) int
	wrote bool
}

func (h *headerWriter) WriteHeader(status int) {
	if h.wrote {
		return
	}
	h.wrote = true
	h.ResponseWriter.WriteHeader(h.f(h.Header(), status))
}

func (h *headerWriter) Write(p []byte) (int, error) {
	if !h.wrote {
		h.WriteHeader(http.StatusOK)
	}
	return h.ResponseWriter.Write(p)
}

type corruptWriter struct {
	http.ResponseWriter
	done bool
}

func (c *corruptWriter) Write(p []byte) (int, error) {
	if !c.done && len(p) > 0 {
		c.done = true
		q := append([]byte(nil), p...)
		q[0] ^= 1
		return c.ResponseWriter.Write(q)
	}
	return c.ResponseWriter.Write(p)
}

type oversizeWriter struct {
	http.ResponseWriter
	status int
}

func (o *oversizeWriter) WriteHeader(status int) {
	o.status = status
	o.Header().Del("Content-Length")
	o.ResponseWriter.WriteHeader(status)
}

func (o *oversizeWriter) Write(p []byte) (int, error) {
	if o.status == 0 {
		o.WriteHeader(http.StatusOK)
	}
	return o.ResponseWriter.Write(p)
}

// dripWriter is the writer of [Drip].
type dripWriter struct {
	http.ResponseWriter
	fast    int64
	n       int64
	every   time.Duration
	ctxDone <-chan struct{}
	gone    bool
}

func (d *dripWriter) Write(p []byte) (int, error) {
	written := 0
	if d.fast > 0 {
		k := int64(len(p))
		if k > d.fast {
			k = d.fast
		}
		m, err := d.ResponseWriter.Write(p[:k])
		d.fast -= int64(m)
		written += m
		if err != nil {
			return written, err
		}
		p = p[k:]
	}
	for len(p) > 0 {
		if d.gone {
			return written, http.ErrAbortHandler
		}
		k := int64(len(p))
		if k > d.n {
			k = d.n
		}
		m, err := d.ResponseWriter.Write(p[:k])
		written += m
		if err != nil {
			return written, err
		}
		if f, ok := d.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		p = p[k:]
		t := time.NewTimer(d.every)
		select {
		case <-t.C:
		case <-d.ctxDone:
			d.gone = true
		}
		t.Stop()
	}
	return written, nil
}

// abortIfGone drops the connection when the client left mid-drip.
func (d *dripWriter) abortIfGone() {
	if d.gone {
		panic(http.ErrAbortHandler)
	}
}

// throttleWriter paces writes so that the body goes out at no more than
// rate bytes per second, in slices of at most 64 KiB. Time the writer
// spends blocked (a client not reading) is not made up for later: like a
// capped connection, it never bursts.
type throttleWriter struct {
	http.ResponseWriter
	rate    int64
	next    time.Time // when the next slice may go
	ctxDone <-chan struct{}
}

func (t *throttleWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), 64<<10)
		if err := t.wait(int64(n)); err != nil {
			return written, err
		}
		k, err := t.ResponseWriter.Write(p[:n])
		written += k
		if err != nil {
			return written, err
		}
		if f, ok := t.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		p = p[n:]
	}
	return written, nil
}

// wait sleeps until the next slice of n bytes may go, and books it.
func (t *throttleWriter) wait(n int64) error {
	now := time.Now()
	if t.next.Before(now) {
		t.next = now
	}
	d := t.next.Sub(now)
	t.next = t.next.Add(time.Duration(float64(n) / float64(t.rate) * float64(time.Second)))
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-t.ctxDone:
		return http.ErrAbortHandler
	}
}
