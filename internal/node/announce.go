package node

// The control plane of the mesh: this node's own Announce (virtual IP, subnets, live neighbours and their
// costs), flooding of everyone's announcements, and turning the link-state database into the routing
// table the data plane reads and the routes the kernel needs on the TUN.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/session"
)

// costChanged reports whether a measured cost moved enough to be re-announced (hysteresis: more than a
// fifth and more than 250 µs), so routes do not flap on jitter. The cost is a windowed minimum of the
// round trips (peer.costRTTUS), which jitter little; a threshold as large as the hop penalty (1 ms)
// would trap a link whose first sample was slow: announced at 1.01 ms and measuring 0.05 ms after, it
// would stay more expensive than a two-hop path through a relay for good.
func costChanged(old, cur uint32) bool {
	d := int64(cur) - int64(old)
	if d < 0 {
		d = -d
	}
	return d > 250 && d*5 > int64(old)
}

// ownAnnounce builds this node's Announce from its live peers. Caller holds annMu.
func (n *Node) ownAnnounce() mesh.Announce {
	a := mesh.Announce{
		Origin:   n.self,
		Seq:      n.annSeq,
		Hostname: n.cfg.Hostname,
		IPv4:     n.cfg.IPv4,
		ProxyIn:  !n.cfg.NoProxyInput,
		Cert:     n.ownCert(),
	}
	a.Endpoints = n.ownEndpoints(time.Now())
	for _, s := range n.cfg.Subnet {
		a.Subnets = append(a.Subnets, mesh.Subnet{Prefix: s, Proxy: !n.cfg.NoProxyInput && !n.cfg.KernelForwardOnly})
	}
	n.peerTab.each(func(p *peer) {
		if !p.alive {
			return
		}
		cost := uint32(min(p.costRTTUS.Load(), 1<<30))
		if p.costUS == 0 || costChanged(p.costUS, cost) {
			p.costUS = max(cost, 1)
		}
		a.Neighbors = append(a.Neighbors, mesh.Neighbor{ID: p.id, CostUS: p.costUS + mesh.HopPenaltyUS})
	})
	slices.SortFunc(a.Neighbors, func(x, y mesh.Neighbor) int {
		if x.ID < y.ID {
			return -1
		}
		if x.ID > y.ID {
			return 1
		}
		return 0
	})
	return a
}

// reannounce rebuilds this node's Announce, floods it and recomputes routes.
func (n *Node) reannounce() {
	n.annMu.Lock()
	n.annSeq++
	a := n.ownAnnounce()
	if err := a.Sign(n.signer); err != nil {
		n.annMu.Unlock()
		n.log.Error("sign announce", "err", err)
		return
	}
	n.db.SetSelf(a, time.Now())
	n.annFlooded = time.Now()
	n.annMu.Unlock()
	n.flood(a, 0)
	n.recompute()
}

// tickAnnounce refreshes this node's Announce periodically, or sooner when a neighbour's cost moved past
// the hysteresis, and expires announcements of vanished nodes.
func (n *Node) tickAnnounce(now time.Time) {
	n.annMu.Lock()
	due := now.Sub(n.annFlooded) >= mesh.RefreshInterval
	if !due {
		n.peerTab.eachRead(func(p *peer) {
			if p.alive && p.costUS != 0 && costChanged(p.costUS, uint32(min(p.costRTTUS.Load(), 1<<30))) {
				due = true
			}
		})
	}
	n.annMu.Unlock()
	if due {
		n.reannounce()
	}
	if n.db.Expire(now) {
		n.recompute()
	}
}

// flood sends a, exactly as its origin signed it, to every live direct peer except the one it came
// from.
func (n *Node) flood(a mesh.Announce, except session.NodeID) {
	msg := append([]byte{msgAnnounce}, a.Wire()...)
	var targets []*peer
	for _, p := range n.peerTab.alive() {
		if p.id != except && p.id != a.Origin {
			targets = append(targets, p)
		}
	}
	for _, p := range targets {
		n.sendControl(p, msg)
	}
}

// sendDatabase gives a new neighbour everything this node knows, so it converges at once.
func (n *Node) sendDatabase(p *peer) {
	for _, a := range n.db.All() {
		if a.Origin == p.id {
			continue
		}
		n.sendControl(p, append([]byte{msgAnnounce}, a.Wire()...))
	}
}

func (n *Node) receiveAnnounce(from *peer, b []byte) {
	a, err := mesh.DecodeAnnounce(b)
	if errors.Is(err, mesh.ErrForgedAnnounce) {
		// Made or altered by a node other than its origin: never stored or flooded.
		n.drops.inc("announce_forged")
		n.warnForged(from, err)
		return
	}
	if err != nil {
		n.drops.inc("malformed")
		return
	}
	if a.Origin == n.self {
		return // our own, echoed back by the flood; ours is authoritative
	}
	if err := n.checkAnnounceCert(a); err != nil {
		// Certificate mode: an origin may announce only what its certificate lists.
		n.drops.inc("announce_uncertified")
		if n.warnDue(&n.uncertAt, from.id) {
			n.log.Warn("dropped an announcement whose certificate does not cover it, passed on by node "+from.id.String(), "err", err)
		}
		return
	}
	stored, full := n.db.Update(a, time.Now())
	if n.log.Enabled(context.Background(), slog.LevelDebug) { // a member can flood announcements: no work when off
		n.log.Debug("announcement", "origin", a.Origin.String(), "seq", a.Seq, "neighbours", len(a.Neighbors), "stored", stored, "from", from.id.String())
	}
	if full {
		n.drops.inc("announce_db_full")
		if n.warnDue(&n.fullAt, from.id) {
			n.log.Warn(fmt.Sprintf("announcement database full (%d origins): refused a new origin %s passed on by node %s; "+
				"a member may be inventing nodes", mesh.MaxOrigins, a.Origin, from.id))
		}
		return
	}
	if stored {
		n.flood(a, from.id)
		n.recomputeSoon()
	}
}

// recomputeEvery is the shortest interval between two recomputes caused by announcements: a burst of
// them (a node joining with a big database, or a member inventing origins) costs one recompute per
// interval, not one each.
const recomputeEvery = 50 * time.Millisecond

// recomputeSoon asks for a recompute: at once when none ran in the last recomputeEvery, else when that
// interval has passed, for every request made meanwhile.
func (n *Node) recomputeSoon() {
	select {
	case n.recomputeReq <- struct{}{}:
	default: // one is pending already
	}
}

func (n *Node) recomputeLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.recomputeReq:
		}
		n.recompute()
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(recomputeEvery):
		}
	}
}

// recompute rebuilds the routing table, publishes it to the data plane, and updates warnings and the
// kernel routes.
func (n *Node) recompute() {
	n.recomputeMu.Lock()
	defer n.recomputeMu.Unlock()
	anns := n.db.All()
	if n.claims.Observe(anns, time.Now()) {
		if err := n.claims.Save(); err != nil {
			n.log.Warn("save address claims", "err", err)
		}
	}
	tab := mesh.ComputeWithClaims(n.self, anns, n.claims)
	old := n.table.Swap(tab)
	if n.proxy != nil && old != nil {
		// Proxied flows with a node that is no longer reachable are reset on this end.
		for _, info := range old.Nodes() {
			if _, ok := tab.Node(info.ID); !ok {
				n.proxy.ClosePeer(info.ID)
			}
		}
	}
	n.updateConflictWarnings(tab)
	want := n.wantRoutes(tab)
	n.routes.apply(want)
	if n.guard != nil {
		if err := n.guard.SetSources(n.meshSources(want)); err != nil {
			n.log.Warn("update anti-spoofing rules", "err", err)
		}
	}
}

// meshSources are the source prefixes only the TUN may deliver: the virtual network and every prefix
// routed into the TUN, except this node's own subnets (their hosts are on the LAN).
func (n *Node) meshSources(routes map[netip.Prefix]int) []netip.Prefix {
	out := []netip.Prefix{n.cfg.IPv4.Masked()}
	for p := range routes {
		if !slices.ContainsFunc(n.cfg.Subnet, func(s netip.Prefix) bool { return s.Overlaps(p) }) {
			out = append(out, p)
		}
	}
	return out
}

func (n *Node) updateConflictWarnings(tab *mesh.Table) {
	n.warnMu.Lock()
	for k := range n.warnings {
		if len(k) > 9 && k[:9] == "conflict-" {
			delete(n.warnings, k)
		}
	}
	n.warnMu.Unlock()
	for _, c := range tab.Conflicts() {
		n.setWarning("conflict-"+c.Prefix.String(), c.Text)
	}
}

// kernelPrefixes are the routes the TUN needs besides its connected network: exposed subnets of other
// nodes and virtual IPs outside this node's own virtual network prefix.
//
// A prefix outside --accept-subnets is not installed, and gets a warning that names it and its node:
// a member must not capture another node's traffic to 169.254.169.254 or a public network.
func (n *Node) kernelPrefixes(tab *mesh.Table) map[netip.Prefix]bool {
	want := map[netip.Prefix]bool{}
	own := n.cfg.IPv4.Masked()
	refused := map[string]string{}
	for _, r := range tab.Routes() {
		if !r.Subnet && own.Contains(r.Prefix.Addr()) {
			continue
		}
		if !n.cfg.Accepts(r.Prefix) {
			owner := r.Node.String()
			if info, ok := tab.Node(r.Node); ok {
				owner += " (" + info.Hostname + ")"
			}
			refused["refused-"+r.Prefix.String()] = "route " + r.Prefix.String() + " from node " + owner +
				" not installed: outside --accept-subnets (" + n.acceptList() + "); list it to accept it"
			continue
		}
		want[r.Prefix] = true
	}
	n.warnMu.Lock()
	for k := range n.warnings {
		if strings.HasPrefix(k, "refused-") && refused[k] == "" {
			delete(n.warnings, k)
		}
	}
	n.warnMu.Unlock()
	for k, text := range refused {
		n.setWarning(k, text)
	}
	return want
}

// acceptList is --accept-subnets as text.
func (n *Node) acceptList() string {
	parts := make([]string, len(n.cfg.AcceptSubnets))
	for i, a := range n.cfg.AcceptSubnets {
		parts[i] = a.String()
	}
	if len(parts) == 0 {
		return "empty"
	}
	return strings.Join(parts, ", ")
}

// dropUnsafe removes from want every prefix that would send this node's own underlay traffic into the
// tunnel (a routing loop): one that overlaps a network of a local interface (the underlay, the LAN,
// loopback) or contains the address of a peer endpoint this node uses. Each gets a warning that names it.
func (n *Node) dropUnsafe(want map[netip.Prefix]bool, local []netip.Prefix) {
	endpoints := n.endpointAddrs()
	reasons := map[netip.Prefix]string{}
	for p := range want {
		for _, l := range local {
			if l.Addr().Is4() && p.Overlaps(l.Masked()) {
				reasons[p] = "it overlaps the local network " + l.Masked().String() + " (address " + l.Addr().String() + ")"
				break
			}
		}
		if _, bad := reasons[p]; bad {
			continue
		}
		for _, a := range endpoints {
			if p.Contains(a) {
				reasons[p] = "it contains the peer endpoint " + a.String() + " this node reaches over the underlay"
				break
			}
		}
	}
	n.warnMu.Lock()
	for k := range n.warnings {
		if strings.HasPrefix(k, "unsafe-") {
			delete(n.warnings, k)
		}
	}
	n.warnMu.Unlock()
	for p, why := range reasons {
		delete(want, p)
		r, _ := n.table.Load().Lookup(p.Addr())
		owner := r.Node.String()
		if info, ok := n.table.Load().Node(r.Node); ok {
			owner += " (" + info.Hostname + ")"
		}
		n.setWarning("unsafe-"+p.String(), "route "+p.String()+" from node "+owner+" not installed: "+why+
			"; installing it would loop this node's own traffic into the tunnel")
	}
}

// endpointAddrs lists the underlay addresses of live peers and of resolved --peer targets.
func (n *Node) endpointAddrs() []netip.Addr {
	var out []netip.Addr
	for _, p := range n.peerTab.alive() {
		if l := p.sendLink(); l != nil {
			out = append(out, l.RemoteAddr().Addr())
		}
	}
	n.dialAddrs.Range(func(_, v any) bool {
		out = append(out, v.(netip.Addr))
		return true
	})
	return out
}

// forgedLogEvery bounds the warnings about forged announcements: one per neighbour per interval.
const forgedLogEvery = 10 * time.Second

// warnForged logs (rate-limited per neighbour) that a neighbour passed on a forged announcement.
func (n *Node) warnForged(from *peer, err error) {
	if n.warnDue(&n.forgedAt, from.id) {
		n.log.Warn("dropped a forged announcement (not signed by its origin) passed on by node "+from.id.String(), "err", err)
	}
}

// warnDue reports whether a warning about node, rate-limited by the map *last, may be logged now (once
// per forgedLogEvery and node) and records it.
func (n *Node) warnDue(last *map[session.NodeID]time.Time, node session.NodeID) bool {
	now := time.Now()
	n.warnMu.Lock()
	defer n.warnMu.Unlock()
	if now.Sub((*last)[node]) < forgedLogEvery {
		return false
	}
	if *last == nil {
		*last = map[session.NodeID]time.Time{}
	}
	if len(*last) >= 1024 {
		// Node IDs come from the network: keep only the entries that still silence a warning.
		for id, t := range *last {
			if now.Sub(t) >= forgedLogEvery {
				delete(*last, id)
			}
		}
	}
	(*last)[node] = now
	return true
}
