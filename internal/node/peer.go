package node

// Direct peers: the sessions this node holds, their keys, liveness and latency. A peer is a node with at
// least one live keypair; it dies when nothing authenticated arrived from it for DeadPeerTimeout.

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/weft-vpn/weft/internal/dataplane"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/underlay"
)

// trafficOf returns the traffic counters of node id (created on first use).
func (n *Node) trafficOf(id session.NodeID) *dataplane.Counters {
	if c, ok := n.traffic.Load(id); ok {
		return c.(*dataplane.Counters)
	}
	c, _ := n.traffic.LoadOrStore(id, new(dataplane.Counters))
	return c.(*dataplane.Counters)
}

// keyEntry maps a local session index to its keypair and peer.
type keyEntry struct {
	kp   *session.Keypair
	peer *peer
}

type linkBox struct{ l underlay.Link }

type peer struct {
	id session.NodeID

	cur  atomic.Pointer[session.Keypair] // the keypair packets are sent with
	link atomic.Pointer[linkBox]         // where packets are sent; the source of the last authenticated packet

	lastRecv      atomic.Int64 // unix nanos of the last authenticated packet
	lastHandshake atomic.Int64 // unix nanos, 0 = never
	rttUS         atomic.Int64 // smoothed round-trip time, microseconds; 0 = not measured yet
	// costRTTUS is the smallest of the last rttWindow round trips, microseconds: the link's cost in
	// announcements. A minimum follows the path, not the load: one slow pong on a busy machine (the
	// first one of a punched path, say) does not make a direct link look worse than a relay.
	costRTTUS  atomic.Int64
	handshakes atomic.Uint64

	// Guarded by the peer table's lock (peertable.go).
	hello    hello
	prev     *session.Keypair // kept for packets still in flight under the old keys
	alive    bool
	pingSeq  uint32
	lastPing time.Time
	// pingsSent holds when the last pings left, by sequence number mod its length: a pong counts only
	// for a ping this node sent, and its round trip is measured on this node's clock.
	pingsSent [4]sentPing
	// rtts are the last round trips (µs), by pong count mod rttWindow: costRTTUS is their minimum.
	rtts     [rttWindow]int64
	nRTTs    int
	rekeying bool
	observed time.Time // when this node last told the peer its observed address (nat.go)
	costUS   uint32    // cost last announced, for hysteresis
	down     chan struct{}
}

func (p *peer) sendLink() underlay.Link {
	if b := p.link.Load(); b != nil {
		return b.l
	}
	return nil
}

// establish installs a fresh keypair for the peer it authenticates. It refuses a peer that has this node's
// own node_id or virtual IP. It reports whether the session was accepted.
func (n *Node) establish(kp *session.Keypair, link underlay.Link, peerHello []byte) bool {
	if rl, ok := link.(*routedLink); ok {
		return n.establishE2E(kp, rl, peerHello)
	}
	h, err := parseHello(peerHello)
	if err != nil {
		n.drops.inc("malformed")
		return false
	}
	id := kp.PeerID()
	from := link.RemoteAddr()
	if id == n.self {
		n.setWarning("dup-id-"+from.String(), "refused peer at "+link.Network()+"://"+from.String()+
			": it has this node's own node_id "+id.String()+" (a copied state dir?): delete node.key in the state dir of one of them and restart it")
		return false
	}
	if err := n.checkPeerCert(kp, h); err != nil {
		n.refusePeer(kp, link, h, err)
		// A rekey with a certificate that expired meanwhile: the session it would renew ends too.
		if p := n.peerTab.get(kp.PeerID()); p != nil {
			n.peerDown(p, "certificate refused")
		}
		return false
	}
	if h.IPv4.Addr() == n.cfg.IPv4.Addr() {
		n.setWarning("dup-ip-"+id.String(), "refused peer "+h.Hostname+" ("+id.String()+") at "+from.String()+
			": it uses this node's virtual IP "+h.IPv4.Addr().String()+"; give each node its own --ipv4")
		return false
	}
	underlay.Trust(link) // a TCP connection gets its full buffers and leaves the handshake deadline
	p, wasAlive := n.peerTab.install(kp, link, h, time.Now())
	if !wasAlive {
		n.log.Info("peer up", "peer", id.String(), "hostname", h.Hostname, "ipv4", h.IPv4.Addr(),
			"endpoint", link.Network()+"://"+from.String(), "cipher", kp.Cipher().String())
		n.reannounce()
	} else {
		n.log.Debug("session rekeyed", "peer", id.String())
	}
	n.sendObserved(p)
	// Every new session gets the whole database: after a restart of the other end (which looks like a
	// rekey from here) it knows nothing, and without our own announcement it has no route back.
	n.sendDatabase(p)
	return true
}

// peerDown forgets a dead peer's keys; routes are recomputed without it.
func (n *Node) peerDown(p *peer, why string) {
	if !n.peerTab.down(p) {
		return
	}
	n.log.Warn("peer down", "peer", p.id.String(), "hostname", n.peerTab.hostname(p), "reason", why)
	n.reannounce()
}

// peer returns the live direct peer with that ID, or nil.
func (n *Node) livePeer(id session.NodeID) *peer { return n.peerTab.live(id) }

// timerLoop drives everything periodic.
func (n *Node) timerLoop() {
	t := time.NewTicker(timerTick)
	defer t.Stop()
	var lastPrune time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case now := <-t.C:
			n.tickPeers(now)
			n.tickHandshakes(now)
			n.tickAnnounce(now)
			n.tickCert(now)
			n.tickE2E(now)
			n.tickPunch(now)
			n.logLimits(now)
			if now.Sub(lastPrune) >= pruneEvery {
				lastPrune = now
				n.prune(now)
			}
		}
	}
}

func (n *Node) tickPeers(now time.Time) {
	type action struct {
		p       *peer
		dead    bool
		ping    bool
		rekey   bool
		observe bool
		seq     uint32
	}
	var acts []action
	n.peerTab.each(func(p *peer) {
		if !p.alive {
			return
		}
		a := action{p: p}
		if now.Sub(p.observed) >= observeEvery {
			p.observed = now
			a.observe = true
		}
		if now.Sub(time.Unix(0, p.lastRecv.Load())) > n.timers.DeadPeerTimeout || linkClosed(p.sendLink()) {
			a.dead = true
		} else {
			if now.Sub(p.lastPing) >= n.timers.KeepaliveInterval {
				p.pingSeq++
				p.lastPing = now
				p.pingsSent[p.pingSeq%uint32(len(p.pingsSent))] = sentPing{seq: p.pingSeq, at: now}
				a.ping, a.seq = true, p.pingSeq
			}
			if kp := p.cur.Load(); kp != nil {
				age := now.Sub(kp.Created())
				if age > n.timers.RejectAfter {
					a.dead = true
				} else if age > n.timers.RekeyAfter && kp.Initiator() && !p.rekeying {
					p.rekeying = true
					a.rekey = true
				}
			}
		}
		acts = append(acts, a)
	})
	for _, a := range acts {
		switch {
		case a.dead:
			n.peerDown(a.p, "no packet for "+n.timers.DeadPeerTimeout.String())
		default:
			if a.ping {
				var b [pingLen]byte
				n.sendControl(a.p, appendPing(b[:0], msgPing, a.seq, now.UnixNano()))
			}
			if a.observe {
				n.sendObserved(a.p)
			}
			if a.rekey {
				if l := a.p.sendLink(); l != nil {
					n.initiate(l, nil)
				}
			}
		}
	}
}

// forgetPeerAfter is how long a dead peer is remembered (its entry, handshake count and traffic
// counters): a member that keeps making fresh identities must not grow the peer table for ever.
const forgetPeerAfter = 10 * time.Minute

// pruneEvery is how often prune runs.
const pruneEvery = 10 * time.Second

// prune forgets peers dead for longer than forgetPeerAfter, and the traffic counters (metric series)
// of nodes that are neither in the routing table nor remembered peers.
func (n *Node) prune(now time.Time) {
	known := n.peerTab.forget(now, forgetPeerAfter)
	tab := n.table.Load()
	n.traffic.Range(func(k, _ any) bool {
		id := k.(session.NodeID)
		if _, ok := tab.Node(id); !ok && !known[id] && id != n.self {
			n.traffic.Delete(k)
		}
		return true
	})
}

// linkClosed reports whether l is a TCP connection that has closed.
func linkClosed(l underlay.Link) bool {
	if l == nil {
		return false
	}
	select {
	case <-l.Done():
		return true
	default:
		return false
	}
}

// sentPing is one ping in flight.
type sentPing struct {
	seq uint32
	at  time.Time
}

// onPong updates the smoothed RTT from a pong with sequence number seq. The time a pong echoes is not
// trusted (a peer could make itself look closer and pull routes through it); only a sequence number
// this node sent counts, once, timed from when it left.
func (n *Node) onPong(p *peer, seq uint32) {
	now := time.Now()
	at, ok := n.peerTab.pongFor(p, seq)
	if !ok {
		return
	}
	rtt := now.Sub(at)
	if rtt < 0 || rtt > 30*time.Second {
		return
	}
	us := rtt.Microseconds()
	if us < 1 {
		us = 1
	}
	old := p.rttUS.Load()
	if old == 0 {
		p.rttUS.Store(us)
	} else {
		p.rttUS.Store(old + (us-old)/8)
	}
	p.costRTTUS.Store(n.peerTab.addRTT(p, us))
}

// endpointString is the underlay address of a peer's current link.
func endpointString(l interface{ RemoteAddr() netip.AddrPort }) string {
	if l == nil {
		return ""
	}
	return l.RemoteAddr().String()
}
