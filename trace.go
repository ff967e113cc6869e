package registry

import (
	"io"
	"sync"
	"time"
)

// RequestTrace is one HTTP request a [Client] made, as [Registry.Trace]
// receives it.
type RequestTrace struct {
	Method string
	// URL is redacted: no user information, no query values other than
	// the registry's own paging and filtering parameters.
	URL string
	// Status is the HTTP status, or 0 when the request failed without a
	// response (Err says why).
	Status int
	// Bytes is how much of the body was read.
	Bytes    int64
	Duration time.Duration
	// Err is why the request got no response (a refused connection, a
	// TLS failure, a stall), without the method and URL, which are the
	// fields above; nil when there was a response.
	Err error
}

// tracedBody counts a body's bytes and reports the request once, when it
// is closed.
type tracedBody struct {
	rc    io.ReadCloser
	start time.Time
	fn    func(RequestTrace)
	rt    RequestTrace
	once  sync.Once
}

func (b *tracedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.rt.Bytes += int64(n)
	return n, err
}

func (b *tracedBody) Close() error {
	err := b.rc.Close()
	b.once.Do(func() {
		b.rt.Duration = time.Since(b.start)
		b.fn(b.rt)
	})
	return err
}
