package registry_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/ocipull/registry"
)

// TestStallsFoundOnTimeInVirtualTime: requests in flight together, each
// to a registry that never answers, each fail with ErrStalled exactly one
// stall window after they were sent (the transport watches them with one
// shared timer, armed for the earliest deadline), and nothing of the
// watch is left running once they ended (the bubble would not end).
func TestStallsFoundOnTimeInVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 10 * time.Second
		hang := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		reg := &registry.Registry{Scheme: "http", Host: "registry.example", Transport: inMemory{hang},
			StallTimeout: window, GetBackOff: func() backoff.BackOff { return &backoff.StopBackOff{} }}
		start := time.Now()
		type result struct {
			sent, ended time.Duration
			err         error
		}
		results := make(chan result, 3)
		for _, delay := range []time.Duration{0, 4 * time.Second, 7 * time.Second} {
			go func() {
				time.Sleep(delay)
				sent := time.Since(start)
				_, err := reg.Repository("team/app").Resolve(context.Background(), "v1")
				results <- result{sent, time.Since(start), err}
			}()
		}
		for range 3 {
			r := <-results
			if !errors.Is(r.err, registry.ErrStalled) {
				t.Errorf("request sent at %s: got %v, want ErrStalled", r.sent, r.err)
			}
			if r.ended-r.sent != window {
				t.Errorf("request sent at %s stalled out after %s, want exactly %s", r.sent, r.ended-r.sent, window)
			}
		}
	})
}
