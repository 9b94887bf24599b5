package node

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestRelayedRouteMTU: in the line a - b - c, a reaches c only through b, so a installs a /32 for c's
// virtual IP with the TUN MTU minus the 42 bytes of the end-to-end envelope (the kernel then sizes
// packets and TCP's MSS for it); b, a direct peer of both, installs none. Once a dials c directly the
// route goes away.
func TestRelayedRouteMTU(t *testing.T) {
	b := startTestNode(t, "10.2.0.2", Timers{})
	a := startTestNode(t, "10.2.0.1", Timers{}, b.port)
	c := startTestNode(t, "10.2.0.3", Timers{}, b.port)
	waitSession(t, a, b, "10.2.0.1", "10.2.0.2")
	waitSession(t, c, b, "10.2.0.3", "10.2.0.2")
	routesOf := func(tn *testNode) map[netip.Prefix]int { return tn.n.routes.set.(*fakeRoutes).snapshot() }
	cIP := netip.MustParsePrefix("10.2.0.3/32")
	want := a.n.cfg.MTU - 42
	waitRoutes := func(what string, cond func() bool) {
		t.Helper()
		for start := time.Now(); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: a's routes %v, b's %v", what, routesOf(a), routesOf(b))
			}
		}
	}
	waitRoutes(fmt.Sprintf("a's relayed route to c with MTU %d", want), func() bool {
		mtu, ok := routesOf(a)[cIP]
		return ok && mtu == want
	})
	if r := routesOf(b); len(r) != 0 {
		t.Fatalf("b, a direct peer of everyone, installed routes %v", r)
	}
	// A direct session between a and c: no relayed route any more.
	l, err := a.n.tr.Dial(context.Background(), "udp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), c.port))
	if err != nil {
		t.Fatal(err)
	}
	a.n.initiate(l, nil)
	waitRoutes("a's relayed route to c gone once they are direct peers", func() bool {
		_, ok := routesOf(a)[cIP]
		return !ok
	})
}
