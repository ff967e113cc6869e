package wire

import (
	"io"
	"net/http"
)

// Recorder wraps a ResponseWriter to note what a request got: the status,
// the body bytes, the authenticated user and a free note for the log. It
// keeps what the wrapped writer can do: Flush, ReadFrom (so io.Copy from
// a file still reaches sendfile) and Unwrap (for
// http.ResponseController's deadlines).
type Recorder struct {
	http.ResponseWriter
	Status int   // 200 until WriteHeader says otherwise
	Bytes  int64 // body bytes written
	User   string
	wrote  bool
}

// NewRecorder wraps w.
func NewRecorder(w http.ResponseWriter) *Recorder {
	return &Recorder{ResponseWriter: w, Status: http.StatusOK}
}

// WriteHeader records the first status written.
func (r *Recorder) WriteHeader(code int) {
	if !r.wrote && code >= 200 {
		r.Status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *Recorder) Write(p []byte) (int, error) {
	r.wrote = true
	n, err := r.ResponseWriter.Write(p)
	r.Bytes += int64(n)
	return n, err
}

// ReadFrom passes io.Copy through to the wrapped writer's ReadFrom, which
// for a net/http response sends a file with sendfile(2).
func (r *Recorder) ReadFrom(src io.Reader) (int64, error) {
	r.wrote = true
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	}
	r.Bytes += n
	return n, err
}

// Flush passes flushes on, so streamed blobs go out as they land.
func (r *Recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap is for http.ResponseController.
func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// NoteUser records the authenticated user on w when it is a Recorder.
func NoteUser(w http.ResponseWriter, user string) {
	if rec, ok := w.(*Recorder); ok {
		rec.User = user
	}
}
