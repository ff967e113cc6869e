// Package wiretest holds test helpers for what the servers put on the
// wire.
package wiretest

import (
	"io"
	"net/http"
	"sync"
	"syscall"
)

// FileSends wraps a handler's response writers to see whether the files
// it serves reach net/http's ReadFrom, which sends them with sendfile(2):
// every wrapper between the handler and the connection must keep
// io.ReaderFrom for that.
type FileSends struct {
	Next http.Handler

	mu    sync.Mutex
	files int64 // bytes that reached ReadFrom from a file
	other int64 // bytes that reached ReadFrom from anything else
}

// ServeHTTP serves through Next with the writer wrapped.
func (f *FileSends) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.Next.ServeHTTP(readFromSpy{w, f}, r)
}

// Bytes reports how many bytes reached ReadFrom from a file, and from
// other readers, in the handlers that have returned (a client may have a
// response's last byte before its handler returns: close the server
// first).
func (f *FileSends) Bytes() (fromFiles, fromOthers int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.files, f.other
}

type readFromSpy struct {
	http.ResponseWriter
	f *FileSends
}

func (s readFromSpy) ReadFrom(src io.Reader) (int64, error) {
	under := src
	if lr, ok := under.(*io.LimitedReader); ok {
		under = lr.R
	}
	// What net's sendfile takes: a reader with a file descriptor (an
	// *os.File, or the wrapper os.File.WriteTo hands on).
	_, isFile := under.(syscall.Conn)
	n, err := s.ResponseWriter.(io.ReaderFrom).ReadFrom(src)
	s.f.mu.Lock()
	if isFile {
		s.f.files += n
	} else {
		s.f.other += n
	}
	s.f.mu.Unlock()
	return n, err
}

func (s readFromSpy) Flush() { s.ResponseWriter.(http.Flusher).Flush() }

func (s readFromSpy) Unwrap() http.ResponseWriter { return s.ResponseWriter }
