// Package faults wraps an [http.Handler], typically a registry.Server, with
// faults that real networks and registries produce: cut connections,
// stalls, rate limits, ignored or wrong ranges, lying headers, corrupted or
// oversized bodies, redirects. It exists so that a client's behaviour on
// its worst day can be tested in a few lines:
//
//	inj := &faults.Injector{Next: registry.NewServer()}
//	inj.Add(faults.Rule{Path: "/blobs/", Times: 1, Fault: faults.CutAfter(1 << 20)})
//	srv := httptest.NewServer(inj)
//
// Each [Rule] selects requests by method, path substring and position (the
// Nth matching request, or the first Times of them); the first rule that
// applies injects its fault. Injector is safe for concurrent use, and
// counts requests so tests can assert how many were made.
package faults

import (
	"net/http"
	"strings"
	"sync"
)

// Injector is an http.Handler that applies rules and passes requests on to Next.
type Injector struct {
	// Next handles requests (and the parts of faulty requests a fault
	// passes through).
	Next http.Handler

	mu       sync.Mutex
	rules    []*ruleState
	requests int
	byPath   map[string]int
}

// Rule selects requests and names the fault they get.
type Rule struct {
	// Method matches the request method when not empty.
	Method string
	// Path matches when the request path contains it; empty matches all.
	Path string
	// Nth, when > 0, applies the fault only to the Nth matching request (1-based).
	Nth int
	// Times, when > 0 and Nth is 0, applies the fault to the first Times
	// matching requests. With both zero, every matching request gets it.
	Times int
	// Fault is what happens to the selected requests.
	Fault Fault
}

type ruleState struct {
	Rule
	seen int
}

// Fault is one misbehaviour. Serve handles the request in its faulty way,
// calling next for the parts it passes through.
type Fault interface {
	Serve(w http.ResponseWriter, r *http.Request, next http.Handler)
}

// FaultFunc adapts a function to Fault.
type FaultFunc func(w http.ResponseWriter, r *http.Request, next http.Handler)

// Serve calls f.
func (f FaultFunc) Serve(w http.ResponseWriter, r *http.Request, next http.Handler) { f(w, r, next) }

// Add appends a rule.
func (in *Injector) Add(r Rule) {
	in.mu.Lock()
	in.rules = append(in.rules, &ruleState{Rule: r})
	in.mu.Unlock()
}

// Reset removes every rule and zeroes the counters.
func (in *Injector) Reset() {
	in.mu.Lock()
	in.rules, in.requests, in.byPath = nil, 0, nil
	in.mu.Unlock()
}

// Requests is how many requests the injector has seen.
func (in *Injector) Requests() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.requests
}

// RequestsTo is how many requests had a path containing substr.
func (in *Injector) RequestsTo(substr string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for p, c := range in.byPath {
		if strings.Contains(p, substr) {
			n += c
		}
	}
	return n
}

// ServeHTTP implements http.Handler.
func (in *Injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var fault Fault
	in.mu.Lock()
	in.requests++
	if in.byPath == nil {
		in.byPath = map[string]int{}
	}
	in.byPath[r.Method+" "+r.URL.Path]++
	for _, rs := range in.rules {
		if rs.Method != "" && rs.Method != r.Method {
			continue
		}
		if rs.Path != "" && !strings.Contains(r.URL.Path, rs.Path) {
			continue
		}
		rs.seen++
		switch {
		case rs.Nth > 0 && rs.seen != rs.Nth:
			continue
		case rs.Nth == 0 && rs.Times > 0 && rs.seen > rs.Times:
			continue
		}
		fault = rs.Fault
		break
	}
	in.mu.Unlock()
	if fault == nil {
		in.Next.ServeHTTP(w, r)
		return
	}
	fault.Serve(w, r, in.Next)
}
