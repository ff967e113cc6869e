// Package testwait is the tests' one way to wait for a condition that
// another process or goroutine brings about: polled, with no sleep
// standing in for the condition.
package testwait

import (
	"testing"
	"time"
)

// Until polls cond every 5 ms until it holds; it fails the test after a
// minute (a hang guard, not a speed claim: the poll ends as soon as the
// condition holds).
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
