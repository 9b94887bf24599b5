package netlab

import (
	"os"
	"testing"
)

// RequireRoot skips the test when the process is not root. When the environment variable CI is
// non-empty it fails the test instead: CI must never silently skip end-to-end tests.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("netlab: this test needs root (network namespaces), and CI is set: run it as root instead of skipping")
	}
	t.Skip("netlab: skipping, needs root (network namespaces)")
}
