package netlab

import (
	"testing"
	"time"
)

// pollInterval is how often Eventually and Proc.WaitLog look again.
const pollInterval = 50 * time.Millisecond

// Eventually calls cond every 50ms until it returns true or timeout has passed, and returns the time it
// took. On timeout it fails the test with t.Fatalf(format, args...).
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) >= timeout {
			t.Fatalf("after %v: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(pollInterval)
	}
}
