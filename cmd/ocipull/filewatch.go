package main

import (
	"fmt"
	"os"
	"time"
)

// fileWatch tells the files a reloader serves from (htpasswd, TLS
// certificates) apart from the versions it loaded, by each file's size
// and modification time, looking at most once an interval. The caller
// holds its own lock around it.
type fileWatch struct {
	interval time.Duration
	checked  time.Time
	loaded   string // stamp of the versions loaded
}

// due reports whether the interval since the last look has passed, and
// counts this as a look.
func (w *fileWatch) due() bool {
	if time.Since(w.checked) < w.interval {
		return false
	}
	w.checked = time.Now()
	return true
}

// changed returns the files' current stamp and whether it differs from
// the one loaded.
func (w *fileWatch) changed(files ...string) (string, bool) {
	s := stampOf(files...)
	return s, s != w.loaded
}

// stampOf identifies the files' current versions ("" names are skipped;
// a missing file has a stamp of its own).
func stampOf(files ...string) string {
	s := ""
	for _, f := range files {
		if f == "" {
			continue
		}
		if st, err := os.Stat(f); err == nil {
			s += stampEntry(f, st)
		} else {
			s += f + ":missing;"
		}
	}
	return s
}

// stampEntry is one file's part of a stamp, from its FileInfo (that of the
// file as opened and read, so that the stamp names the version loaded).
func stampEntry(name string, st os.FileInfo) string {
	return fmt.Sprintf("%s:%d:%d;", name, st.Size(), st.ModTime().UnixNano())
}
