package node

// NAT traversal: how a node behind a NAT comes to talk to another one directly.
//
//	discovery: every peer with a UDP session reports, in the session, the address it sees this node's
//	           packets come from (msgObserved, on each new session and every observeEvery) ->
//	           punch.Observations -> the NAT type, and the mapped addresses as endpoints
//	exchange:  this node's endpoints (its UDP listeners' local addresses, the mapped addresses) travel
//	           in its signed announcement, so every node learns them through the mesh: no signalling
//	           server, and no member or relay can forge another node's endpoints
//	punching:  each tick, punch.Puncher looks at every node without a direct session that announced
//	           endpoints; during an attempt both sides send handshake message 1 to all the other's
//	           endpoints from their UDP listener (the socket whose mapping was observed), so each
//	           side's NAT opens for the other. The first handshake that completes, from whatever
//	           address it came (a symmetric NAT's new mapping, peer-reflexive), is a direct session:
//	           routing moves the traffic to it, and back to the relays when it dies; sessions and
//	           proxied flows are keyed by node, not by path, so neither is reset.

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"time"

	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/punch"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/tun"
)

// msgObserved: | 9 | ipv4 [4] | port u16 |: the address the sender sees the receiver's packets come from.
const (
	msgObserved    = 9
	observedLen    = 1 + 4 + 2
	observeEvery   = 10 * time.Second
	endpointsEvery = 30 * time.Second // local addresses are looked up again this often
)

// sendObserved tells p where its packets come from (UDP sessions only: a TCP connection's source says
// nothing about a UDP mapping).
func (n *Node) sendObserved(p *peer) {
	l := p.sendLink()
	if l == nil || l.Network() != "udp" || !l.RemoteAddr().Addr().Unmap().Is4() {
		return
	}
	ap := l.RemoteAddr()
	var b [observedLen]byte
	b[0] = msgObserved
	a := ap.Addr().Unmap().As4()
	copy(b[1:5], a[:])
	binary.BigEndian.PutUint16(b[5:], ap.Port())
	n.sendControl(p, b[:])
}

// receiveObserved records what p reports about this node's address; a new mapped address is announced.
func (n *Node) receiveObserved(p *peer, pt []byte) {
	if len(pt) != observedLen {
		n.drops.inc("malformed")
		return
	}
	l := p.sendLink()
	if l == nil || l.Network() != "udp" {
		return
	}
	mapped := netip.AddrPortFrom(netip.AddrFrom4([4]byte(pt[1:5])), binary.BigEndian.Uint16(pt[5:]))
	if !mapped.Addr().IsGlobalUnicast() || mapped.Port() == 0 {
		return
	}
	if n.observed.Add(l.RemoteAddr(), mapped, time.Now()) {
		n.log.Info("public address seen by peers changed", "mapped", n.observed.Mapped(time.Now()), "nat", n.natType())
		n.reannounce()
	}
}

// localEndpoints are this node's UDP listeners' addresses, with an unspecified host expanded to the
// addresses of its interfaces (not the TUN, not loopback or link-local). Cached for endpointsEvery.
func (n *Node) localEndpoints(now time.Time) []netip.AddrPort {
	n.natMu.Lock()
	defer n.natMu.Unlock()
	if n.localEPAt.IsZero() || now.Sub(n.localEPAt) >= endpointsEvery {
		n.localEPAt = now
		n.localEP = n.lookupLocalEndpoints()
	}
	return n.localEP
}

func (n *Node) lookupLocalEndpoints() []netip.AddrPort {
	var ifaddrs []netip.Addr
	if n.fakeDev == nil {
		if ps, err := tun.LocalPrefixes(n.cfg.Dev); err == nil {
			for _, p := range ps {
				ifaddrs = append(ifaddrs, p.Addr())
			}
		}
	}
	var out []netip.AddrPort
	for _, l := range n.udpListen {
		if l.Addr().IsUnspecified() {
			for _, a := range ifaddrs {
				out = append(out, netip.AddrPortFrom(a, l.Port()))
			}
		} else {
			out = append(out, l)
		}
	}
	return slices.DeleteFunc(out, func(e netip.AddrPort) bool {
		a := e.Addr()
		return !a.Is4() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a == n.cfg.IPv4.Addr()
	})
}

// ownEndpoints are the endpoints this node announces: its local addresses, then what peers observed.
func (n *Node) ownEndpoints(now time.Time) []netip.AddrPort {
	eps := slices.Clone(n.localEndpoints(now))
	for _, m := range n.observed.Mapped(now) {
		if !slices.Contains(eps, m) {
			eps = append(eps, m)
		}
	}
	return eps[:min(len(eps), mesh.MaxEndpoints)]
}

// natType names this node's NAT from its peers' reports.
func (n *Node) natType() string {
	now := time.Now()
	var lans []netip.Prefix
	if n.fakeDev == nil {
		if ps, err := tun.LocalPrefixes(n.cfg.Dev); err == nil {
			for _, p := range ps {
				lans = append(lans, p.Masked())
			}
		}
	}
	return n.observed.Classify(n.localEndpoints(now), lans, now)
}

// tickPunch runs the path state machine and sends the handshakes it asks for.
func (n *Node) tickPunch(now time.Time) {
	if n.punch == nil {
		return
	}
	tab := n.table.Load()
	own := n.localEndpoints(now)
	var targets []punch.Target
	for _, info := range tab.Nodes() {
		if info.ID == n.self {
			continue
		}
		t := punch.Target{Node: info.ID, Direct: n.livePeer(info.ID) != nil}
		if a, ok := n.db.Get(info.ID); ok {
			for _, e := range a.Endpoints {
				// Never our own addresses, and never one inside the mesh: punching through the tunnel
				// would loop underlay packets into it.
				_, inMesh := tab.Lookup(e.Addr())
				if !slices.Contains(own, e) && !n.local.Owns(e.Addr()) && !inMesh {
					t.Endpoints = append(t.Endpoints, e)
				}
			}
		}
		targets = append(targets, t)
	}
	for _, s := range n.punch.Tick(now, targets) {
		link, err := n.tr.Dial(n.ctx, "udp", s.To)
		if err != nil {
			n.log.Debug("punch", "to", s.To, "err", err)
			continue
		}
		n.initiate(link, nil)
	}
}

// punchPath returns what the path state machine knows about node id, for weft peers.
func (n *Node) punchPath(id session.NodeID) (punch.Path, bool) {
	if n.punch == nil {
		return punch.Path{}, false
	}
	return n.punch.Path(id)
}
