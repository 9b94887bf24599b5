package tun

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// requireRoot skips tests that need root, unless CI is set.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root (CI is set, so it may not be skipped)")
	}
	t.Skip("this test needs root")
}

// enterNetns moves the test goroutine, locked to its OS thread, into a fresh
// named network namespace and returns its name. Cleanup restores the original
// namespace and deletes the new one; register device cleanups after calling
// it so they run first.
func enterNetns(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current netns: %v", err)
	}
	name := fmt.Sprintf("weft-tun-%d-%08x", os.Getpid(), rand.Uint32())
	ns, err := netns.NewNamed(name)
	if err != nil {
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		orig.Close()
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		// If restoring fails the thread stays locked and dies with the goroutine.
		if err := netns.Set(orig); err != nil {
			t.Errorf("restore netns: %v", err)
		} else {
			runtime.UnlockOSThread()
		}
		ns.Close()
		orig.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return name
}

func TestNetnsLeftBehind(t *testing.T) {
	var name string
	t.Run("create", func(t *testing.T) {
		name = enterNetns(t)
		dev, err := Create("wt0", 1400)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dev.Close() })
	})
	if name == "" {
		return // skipped
	}
	if _, err := os.Stat(filepath.Join("/var/run/netns", name)); !os.IsNotExist(err) {
		t.Fatalf("netns %s still exists after the test (stat: %v)", name, err)
	}
}
