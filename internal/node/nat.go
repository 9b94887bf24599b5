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
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/punch"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/tun"
	"github.com/weft-vpn/weft/internal/underlay"
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

// tickPunch runs the mapping probes and the path state machine, and sends the handshakes it asks for.
func (n *Node) tickPunch(now time.Time) {
	n.tickProbes(now)
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

// Mapping probes: a node with two UDP listeners (a public node, say on 11010 and 11011) lets the nodes
// it has sessions with see how their NAT maps. X asks P in their session to watch for a token
// (msgProbeReq), then sends a bare probe packet with that token from its listening socket to P's other
// port; P answers in the session with where the probe came from (msgProbed). A cone NAT gives the same
// mapping as for P's first port, a symmetric one another: two observers from one public node. The
// probe itself proves nothing and costs P one map lookup; only X's session learns the answer.
//
//	msgProbeReq | 10 | token [8] |
//	msgProbed   | 11 | token [8] | ipv4 [4] | port u16 |
const (
	msgProbeReq   = 10
	msgProbed     = 11
	probeReqLen   = 1 + 8
	probedLen     = 1 + 8 + 4 + 2
	probeEvery    = time.Minute
	probeTTL      = 5 * time.Second
	probeTokenMax = 1024 // tokens a node watches for at once (others' probes), and its own outstanding
	probePerPeer  = 4    // tokens one peer may have this node watch for at once
)

// probeWatch is a token a peer asked this node to watch for.
type probeWatch struct {
	peer    session.NodeID
	expires time.Time
}

// ownProbe is a probe this node sent.
type ownProbe struct {
	to      netip.AddrPort // the peer's second port the probe went to
	expires time.Time
}

// tickProbes probes every live UDP peer not probed within probeEvery that announced an endpoint on the
// address of the session with another port, and expires old tokens.
func (n *Node) tickProbes(now time.Time) {
	type job struct {
		p  *peer
		to netip.AddrPort
	}
	var jobs []job
	for _, p := range n.peerTab.alive() {
		l := p.sendLink()
		if l == nil || l.Network() != "udp" {
			continue
		}
		a, ok := n.db.Get(p.id)
		if !ok {
			continue
		}
		at := l.RemoteAddr()
		for _, e := range a.Endpoints {
			if e.Addr() == at.Addr().Unmap() && e.Port() != at.Port() {
				jobs = append(jobs, job{p, e})
				break
			}
		}
	}
	for _, j := range jobs {
		n.natMu.Lock()
		due := now.Sub(n.probedAt[j.p.id]) >= probeEvery && len(n.ownProbes) < probeTokenMax
		var token [8]byte
		if due {
			n.probedAt[j.p.id] = now
			rand.Read(token[:])
			n.ownProbes[token] = ownProbe{to: j.to, expires: now.Add(probeTTL)}
		}
		n.natMu.Unlock()
		if !due {
			continue
		}
		n.sendControl(j.p, append([]byte{msgProbeReq}, token[:]...))
		link, err := n.tr.Dial(n.ctx, "udp", j.to)
		if err != nil {
			continue
		}
		pkt := make([]byte, session.ProbeLen)
		pkt[0] = session.TypeProbe
		copy(pkt[4:], token[:])
		// The request travels in the session, the probe beside it: let the request arrive first.
		time.AfterFunc(50*time.Millisecond, func() { _ = link.Send(pkt) })
	}
	n.natMu.Lock()
	for k, w := range n.probeWatch {
		if now.After(w.expires) {
			delete(n.probeWatch, k)
		}
	}
	for k, o := range n.ownProbes {
		if now.After(o.expires) {
			delete(n.ownProbes, k)
		}
	}
	for id, at := range n.probedAt {
		if now.Sub(at) > 2*probeEvery {
			delete(n.probedAt, id) // peers gone: the map holds only the recently probed
		}
	}
	n.natMu.Unlock()
}

// receiveProbeReq records a token peer p wants to be told about.
func (n *Node) receiveProbeReq(p *peer, pt []byte) {
	if len(pt) != probeReqLen {
		n.drops.inc("malformed")
		return
	}
	n.natMu.Lock()
	defer n.natMu.Unlock()
	mine := 0
	for _, w := range n.probeWatch {
		if w.peer == p.id {
			mine++
		}
	}
	if len(n.probeWatch) >= probeTokenMax || mine >= probePerPeer {
		return // a peer asking for more is not answered; the others are unaffected
	}
	n.probeWatch[[8]byte(pt[1:9])] = probeWatch{peer: p.id, expires: time.Now().Add(probeTTL)}
}

// handleProbe answers a probe packet whose token a peer gave this node, in that peer's session; any
// other is dropped.
func (n *Node) handleProbe(pkt []byte, from underlay.Link) {
	if len(pkt) != session.ProbeLen || from.Network() != "udp" {
		n.drops.inc("malformed")
		return
	}
	token := [8]byte(pkt[4:12])
	w, ok := takeToken(&n.natMu, n.probeWatch, token)
	src := from.RemoteAddr()
	p := n.livePeer(w.peer)
	if !ok || p == nil || !src.Addr().Unmap().Is4() {
		n.drops.inc("unknown_session")
		return
	}
	b := make([]byte, 0, probedLen)
	b = append(append(b, msgProbed), token[:]...)
	a := src.Addr().Unmap().As4()
	b = append(b, a[:]...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	n.sendControl(p, b)
}

// receiveProbed takes a peer's answer to one of this node's probes: the mapping its NAT gave towards
// the peer's other port.
func (n *Node) receiveProbed(p *peer, pt []byte) {
	if len(pt) != probedLen {
		n.drops.inc("malformed")
		return
	}
	token := [8]byte(pt[1:9])
	o, ok := takeToken(&n.natMu, n.ownProbes, token)
	if !ok {
		return
	}
	mapped := netip.AddrPortFrom(netip.AddrFrom4([4]byte(pt[9:13])), binary.BigEndian.Uint16(pt[13:]))
	if !mapped.Addr().IsGlobalUnicast() || mapped.Port() == 0 {
		return
	}
	if n.observed.Add(o.to, mapped, time.Now()) {
		n.log.Info("public address seen by peers changed", "mapped", n.observed.Mapped(time.Now()), "nat", n.natType())
		n.reannounce()
	}
}

// takeToken removes token from m (guarded by mu) and returns what it held: every token is used once.
func takeToken[V any](mu *sync.Mutex, m map[[8]byte]V, token [8]byte) (V, bool) {
	mu.Lock()
	defer mu.Unlock()
	v, ok := m[token]
	delete(m, token)
	return v, ok
}
