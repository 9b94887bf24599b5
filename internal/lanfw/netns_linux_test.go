package lanfw

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/weft-vpn/weft/internal/netlab"
)

// inNetns runs fn on the test goroutine's OS thread switched into h's
// network namespace, then switches back. fn must not call t.FailNow (use
// t.Errorf and check afterwards): the thread has to be restored first.
func inNetns(t *testing.T, h *netlab.Host, fn func()) {
	t.Helper()
	target, err := netns.GetFromName(h.Netns())
	if err != nil {
		t.Fatalf("open netns %s: %v", h.Netns(), err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current netns: %v", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("enter netns %s: %v", h.Netns(), err)
	}
	fn()
	if err := netns.Set(orig); err != nil {
		// The thread stays locked and dies with the goroutine.
		t.Fatalf("restore netns after %s: %v", h.Netns(), err)
	}
	runtime.UnlockOSThread()
}

// install runs Install inside h's namespace and registers Close as cleanup
// (run before the Lab deletes the namespace). It fails the test on error.
func install(t *testing.T, h *netlab.Host, opts Options) *Table {
	t.Helper()
	var (
		tbl *Table
		err error
	)
	inNetns(t, h, func() { tbl, err = Install(opts) })
	if err != nil {
		t.Fatalf("Install(%+v): %v", opts, err)
	}
	t.Cleanup(func() {
		if err := tbl.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return tbl
}
