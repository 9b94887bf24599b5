package node

// Kernel routes of the TUN, fed by routing-table snapshots. After every recompute the node works out
// the routes it wants (wantRoutes: prefix -> route MTU) from the table alone, and a routeSync installs
// the difference through a routeSetter: netlink for a real TUN, a recording fake for a fake device.
//
//	table snapshot -> wantRoutes (accept list, loop safety, relayed MTU) -> routeSync.apply -> setter
//
// Which routes: other nodes' subnets and virtual IPs outside this node's mesh prefix (when
// --accept-subnets takes them), and, for a node reached through relays, its virtual IP as a /32 with
// the smaller relayed MTU, so that the kernel sizes packets (and TCP its MSS) for the 42 extra bytes
// of the end-to-end envelope instead of having every full-size packet fragmented on the underlay.

import (
	"maps"
	"net/netip"
	"sync"

	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/tun"
)

// relayedOverhead is what travelling end to end through relays adds to an inner packet: the msgSealed
// envelope, the e2e session header and its tag.
const relayedOverhead = sealedHeaderLen + session.DataHeaderLen + session.TagLen

// routeSetter changes the routes of the TUN.
type routeSetter interface {
	// replace installs or updates the route to dst (mtu 0: the device's).
	replace(dst netip.Prefix, mtu int) error
	remove(dst netip.Prefix) error
	// locals returns the networks of the machine's other interfaces (routes into them would loop).
	locals() ([]netip.Prefix, error)
}

// netlinkRoutes sets routes on a real TUN.
type netlinkRoutes struct {
	dev string
	src netip.Addr
}

func (r netlinkRoutes) replace(dst netip.Prefix, mtu int) error {
	return tun.AddRouteMTU(r.dev, dst, r.src, mtu)
}
func (r netlinkRoutes) remove(dst netip.Prefix) error   { return tun.DelRoute(r.dev, dst) }
func (r netlinkRoutes) locals() ([]netip.Prefix, error) { return tun.LocalPrefixes(r.dev) }

// fakeRoutes records routes for a node on a fake device (tests).
type fakeRoutes struct {
	mu     sync.Mutex
	routes map[netip.Prefix]int
}

func (r *fakeRoutes) replace(dst netip.Prefix, mtu int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.routes == nil {
		r.routes = map[netip.Prefix]int{}
	}
	r.routes[dst] = mtu
	return nil
}

func (r *fakeRoutes) remove(dst netip.Prefix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.routes, dst)
	return nil
}

func (r *fakeRoutes) locals() ([]netip.Prefix, error) { return nil, nil }

// snapshot returns the routes set so far.
func (r *fakeRoutes) snapshot() map[netip.Prefix]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.routes)
}

// routeSync keeps the installed routes equal to the last wanted set.
type routeSync struct {
	mu        sync.Mutex
	set       routeSetter
	installed map[netip.Prefix]int
	warn      func(msg string, args ...any)
}

func newRouteSync(set routeSetter, warn func(msg string, args ...any)) *routeSync {
	return &routeSync{set: set, installed: map[netip.Prefix]int{}, warn: warn}
}

// apply installs what want has and the kernel lacks (or has with another MTU) and removes the rest.
func (s *routeSync) apply(want map[netip.Prefix]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.installed {
		if _, ok := want[p]; !ok {
			if err := s.set.remove(p); err != nil {
				s.warn("remove route", "prefix", p, "err", err)
			}
			delete(s.installed, p)
		}
	}
	for p, mtu := range want {
		if cur, ok := s.installed[p]; ok && cur == mtu {
			continue
		}
		if err := s.set.replace(p, mtu); err != nil {
			s.warn("install route", "prefix", p, "err", err)
			continue
		}
		s.installed[p] = mtu
	}
}

// clear removes every route this node installed.
func (s *routeSync) clear() { s.apply(nil) }

// wantRoutes is the route set for table tab: the accepted, loop-safe prefixes of kernelPrefixes, each
// with the relayed MTU when its node is reached through relays, plus a /32 with the relayed MTU for
// every relayed node's virtual IP inside this node's mesh prefix.
func (n *Node) wantRoutes(tab *mesh.Table) map[netip.Prefix]int {
	prefixes := n.kernelPrefixes(tab)
	local, err := n.routes.set.locals()
	if err != nil {
		n.log.Warn("list local networks", "err", err)
	}
	n.dropUnsafe(prefixes, local)
	relayedMTU := n.cfg.MTU - relayedOverhead
	relayed := func(id session.NodeID) bool {
		info, ok := tab.Node(id)
		return ok && info.NextHop != id
	}
	want := make(map[netip.Prefix]int, len(prefixes))
	for _, r := range tab.Routes() {
		switch {
		case prefixes[r.Prefix]:
			want[r.Prefix] = 0
			if relayed(r.Node) {
				want[r.Prefix] = relayedMTU
			}
		case !r.Subnet && r.Prefix.Bits() == 32 && n.cfg.IPv4.Masked().Contains(r.Prefix.Addr()) &&
			r.Node != n.self && relayed(r.Node):
			want[r.Prefix] = relayedMTU
		}
	}
	return want
}
