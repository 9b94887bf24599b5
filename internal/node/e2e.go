package node

// End-to-end sessions for relayed traffic. Two nodes without a direct session run their own Noise
// session (the same handshake as direct peers, its three messages carried as msgRoutedHandshake through
// the relays), and everything one sends the other travels sealed in it, inside a msgSealed envelope
// that relays forward by destination node without being able to read or change it:
//
//	send (sealTo): inner message -> direct peer? its session, done : e2e keypair of the destination
//	      -> SealInPlace (e2e header in front) -> msgSealed | ttl | dst -> next hop's session -> link
//	      no e2e session yet: the message waits in a short queue and a handshake starts
//	relay (forwardRouted): open the hop layer -> msgSealed / msgRoutedHandshake for another node ->
//	      TTL-1 -> next hop's session; the e2e packet inside is passed on byte for byte
//	receive (receiveSealed): open the hop layer -> msgSealed for this node -> e2e receiver index ->
//	      keypair -> Open in place -> the inner message, from the node that keypair authenticated
//
// Direct peers keep their one session (no double encryption). Because relayed traffic always arrives
// in an e2e session, a node accepts over a direct session only what the peer itself originated: an IP
// packet whose source the peer owns, a KCP segment from the peer to this node. So every inner packet's
// origin is authenticated, and source validation keys on it.

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/weft-vpn/weft/internal/dataplane"
	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/underlay"
)

const (
	// sealedHeaderLen is the msgSealed envelope: type, TTL, destination node.
	sealedHeaderLen = dataplane.EnvelopeLen
	// routedHsHeaderLen is the msgRoutedHandshake envelope: type, TTL, destination and source node.
	routedHsHeaderLen = 2 + 8 + 8
	// e2eExtra is the headroom an e2e-sealed message needs besides one session header: the envelope
	// and the e2e session header.
	e2eExtra = dataplane.E2EExtra
	// msgOffset is where an inner message starts in an outbound buffer: room for the hop session
	// header, the envelope and the e2e session header in front of it.
	msgOffset = dataplane.MsgOffset
	// e2eQueueMax bounds the messages that wait for an e2e session, per destination.
	e2eQueueMax = 32
)

// e2ePeer is the end-to-end session with one node that is not a direct peer.
type e2ePeer struct {
	id       session.NodeID
	cur      *session.Keypair
	prev     *session.Keypair
	hello    hello
	started  time.Time // when this node last started a handshake towards it (zero: none in flight)
	lastUsed time.Time
	queue    [][]byte // inner messages waiting for the session
}

// e2eTable holds the e2e sessions, with its own lock (never held while calling out of it).
type e2eTable struct {
	mu      sync.Mutex
	peers   map[session.NodeID]*e2ePeer
	indices map[uint32]*e2ePeer
}

func newE2ETable() *e2eTable {
	return &e2eTable{peers: map[session.NodeID]*e2ePeer{}, indices: map[uint32]*e2ePeer{}}
}

// hasIndex reports whether i is a local index of an e2e keypair.
func (t *e2eTable) hasIndex(i uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.indices[i]
	return ok
}

// byIndex returns the keypair with local index i and its peer.
func (t *e2eTable) byIndex(i uint32) (*session.Keypair, *e2ePeer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.indices[i]
	if p == nil {
		return nil, nil
	}
	for _, kp := range []*session.Keypair{p.cur, p.prev} {
		if kp != nil && kp.LocalIndex() == i {
			return kp, p
		}
	}
	return nil, nil
}

// sealTo seals the inner message buf[msgOffset:msgOffset+msgLen] for node dst and returns the packet
// and the link to send it on. A direct peer gets it in its own session; any other node in the e2e
// session, wrapped in a msgSealed envelope for the next hop. Without an e2e session yet, the message is
// queued (a handshake starts) and pkt is nil with queued true. buf needs room for two tags behind the
// message.
func (n *Node) sealTo(tab *mesh.Table, dst session.NodeID, buf []byte, msgLen int) (pkt []byte, link underlay.Link, queued bool) {
	info, ok := tab.Node(dst)
	if !ok {
		n.drops.inc("no_route")
		return nil, nil, false
	}
	if info.NextHop == dst {
		p := n.livePeer(dst)
		if p == nil {
			n.drops.inc("no_route")
			return nil, nil, false
		}
		pkt, link = n.seal(p, buf[e2eExtra:], msgLen)
		return pkt, link, false
	}
	hop := n.livePeer(info.NextHop)
	if hop == nil {
		n.drops.inc("no_route")
		return nil, nil, false
	}
	kp := n.e2eKey(dst, buf[msgOffset:msgOffset+msgLen])
	if kp == nil {
		return nil, nil, true
	}
	inner, err := kp.SealInPlace(buf[e2eExtra:], msgLen)
	if err != nil {
		n.drops.inc("seal")
		return nil, nil, false
	}
	env := buf[session.DataHeaderLen:e2eExtra]
	env[0], env[1] = msgSealed, defaultTTL
	putUint64(env[2:], uint64(dst))
	pkt, link = n.seal(hop, buf, sealedHeaderLen+len(inner))
	return pkt, link, false
}

// e2eKey returns the keypair to seal for dst with, starting a handshake when there is none or it is
// due for a rekey. Without one, msg is copied into dst's queue (up to e2eQueueMax; more are dropped).
func (n *Node) e2eKey(dst session.NodeID, msg []byte) *session.Keypair {
	now := time.Now()
	t := n.e2e
	t.mu.Lock()
	p := t.peers[dst]
	if p == nil {
		p = &e2ePeer{id: dst}
		t.peers[dst] = p
	}
	p.lastUsed = now
	kp := p.cur
	if kp != nil && now.Sub(kp.Created()) > n.timers.RejectAfter {
		kp = nil
	}
	start := (kp == nil || (kp.Initiator() && now.Sub(kp.Created()) > n.timers.RekeyAfter)) &&
		(p.started.IsZero() || now.Sub(p.started) > n.timers.HandshakeTimeout)
	if start {
		p.started = now
	}
	if kp == nil {
		if len(p.queue) < e2eQueueMax {
			p.queue = append(p.queue, append([]byte(nil), msg...))
		} else {
			n.drops.inc("e2e_queue_full")
		}
	}
	t.mu.Unlock()
	if start {
		n.initiateE2E(dst)
	}
	return kp
}

// initiateE2E sends handshake message 1 to node dst through the mesh.
func (n *Node) initiateE2E(dst session.NodeID) {
	n.initiate(&routedLink{n: n, dst: dst}, nil)
}

// establishE2E installs the e2e session a handshake through the mesh produced, after the same checks
// as a direct one, and sends what waited for it.
func (n *Node) establishE2E(kp *session.Keypair, rl *routedLink, peerHello []byte) bool {
	h, err := parseHello(peerHello)
	if err != nil {
		n.drops.inc("malformed")
		return false
	}
	id := kp.PeerID()
	if id == n.self || (rl.initiator && id != rl.dst) {
		// A handshake we started reached another node than the one we meant (or ourselves).
		n.drops.inc("e2e_wrong_peer")
		return false
	}
	if err := n.checkPeerCert(kp, h); err != nil {
		n.drops.inc("cert_refused")
		if n.warnDue(&n.refusedAt, id) {
			n.log.Warn("refused an end-to-end session with "+h.Hostname+" ("+id.String()+"): "+err.Error(), "peer", id.String())
		}
		return false
	}
	t := n.e2e
	t.mu.Lock()
	p := t.peers[id]
	if p == nil {
		p = &e2ePeer{id: id}
		t.peers[id] = p
	}
	if p.prev != nil {
		delete(t.indices, p.prev.LocalIndex())
	}
	p.prev, p.cur = p.cur, kp
	t.indices[kp.LocalIndex()] = p
	p.hello = h
	p.started = time.Time{}
	p.lastUsed = time.Now()
	queue := p.queue
	p.queue = nil
	t.mu.Unlock()
	n.log.Debug("end-to-end session up", "peer", id.String(), "hostname", h.Hostname, "cipher", kp.Cipher().String())
	tab := n.table.Load()
	for _, msg := range queue {
		buf := make([]byte, msgOffset+len(msg)+2*session.TagLen)
		copy(buf[msgOffset:], msg)
		if pkt, link, _ := n.sealTo(tab, id, buf, len(msg)); pkt != nil {
			if err := link.Send(pkt); err != nil {
				n.drops.inc("send")
			}
		}
	}
	return true
}

// tickE2E forgets expired e2e keys and e2e peers idle past RejectAfter.
func (n *Node) tickE2E(now time.Time) {
	t := n.e2e
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, p := range t.peers {
		for _, kp := range []*session.Keypair{p.prev, p.cur} {
			if kp != nil && now.Sub(kp.Created()) > n.timers.RejectAfter {
				delete(t.indices, kp.LocalIndex())
				if p.prev == kp {
					p.prev = nil
				} else {
					p.cur = nil
				}
			}
		}
		if p.cur == nil && p.prev == nil && now.Sub(p.lastUsed) > n.timers.RejectAfter {
			delete(t.peers, id)
		}
	}
}

// receiveSealed handles a msgSealed envelope: for this node, it opens the e2e packet and dispatches the
// inner message as coming from the node its keypair authenticated; for another node it is relayed.
// pkt is the whole underlay buffer (the envelope at pkt[DataHeaderLen:]). For an IP packet it returns
// the buffer to write to the TUN, with the packet at tunOffset.
func (n *Node) receiveSealed(from *peer, pkt, pt []byte) []byte {
	if len(pt) < sealedHeaderLen+session.Overhead {
		n.drops.inc("malformed")
		return nil
	}
	if dst := session.NodeID(beUint64(pt[2:10])); dst != n.self {
		n.forwardRouted(dst, pkt, pt)
		return nil
	}
	e2ePkt := pt[sealedHeaderLen:]
	idx, ok := session.ReceiverIndex(e2ePkt)
	if !ok {
		n.drops.inc("malformed")
		return nil
	}
	kp, p := n.e2e.byIndex(idx)
	if kp == nil {
		n.drops.inc("unknown_session")
		return nil
	}
	inner, err := kp.Open(e2ePkt[session.DataHeaderLen:session.DataHeaderLen], e2ePkt)
	if err != nil {
		// Altered on the way (by a relay or anyone on the path), or replayed.
		if errors.Is(err, session.ErrReplay) {
			n.drops.inc("e2e_replay")
		} else {
			n.drops.inc("e2e_decrypt")
		}
		return nil
	}
	if len(inner) == 0 {
		n.drops.inc("malformed")
		return nil
	}
	origin := p.id
	switch inner[0] {
	case msgIP:
		if len(inner) < ipHeaderLen {
			n.drops.inc("malformed")
			return nil
		}
		// The IP packet sits at pkt[DataHeaderLen+e2eExtra+ipHeaderLen:]; the TUN batch wants it at
		// tunOffset of the buffer it is given.
		if length, ok := n.plane.Deliver(origin, inner[ipHeaderLen:]); ok {
			return pkt[e2eExtra : e2eExtra+dataplane.TUNWriteOffset+length]
		}
	case msgKCP:
		n.deliverKCP(origin, inner)
	default:
		n.drops.inc("malformed")
	}
	return nil
}

// forwardRouted relays a msgSealed or msgRoutedHandshake envelope towards dst over the next hop's
// session, its TTL decremented; what it carries is passed on unchanged.
func (n *Node) forwardRouted(dst session.NodeID, pkt, pt []byte) {
	ttl := pt[1]
	if ttl <= 1 {
		n.drops.inc("ttl_exceeded")
		return
	}
	pt[1] = ttl - 1
	if out, link := n.sealFor(n.table.Load(), dst, pkt[:cap(pkt)], len(pt)); out != nil {
		if err := link.Send(out); err != nil {
			n.drops.inc("send")
		}
	}
}

// receiveRoutedHandshake handles a msgRoutedHandshake envelope: for this node, the handshake message
// inside is handled as one from its source node (answers go back through the mesh); for another node
// it is relayed.
func (n *Node) receiveRoutedHandshake(from *peer, pkt, pt []byte) {
	if len(pt) < routedHsHeaderLen+1 {
		n.drops.inc("malformed")
		return
	}
	dst, src := session.NodeID(beUint64(pt[2:10])), session.NodeID(beUint64(pt[10:18]))
	if dst != n.self {
		n.forwardRouted(dst, pkt, pt)
		return
	}
	if src == n.self {
		n.drops.inc("src_spoofed")
		return
	}
	hs := pt[routedHsHeaderLen:]
	typ, ok := session.PacketType(hs)
	if !ok {
		n.drops.inc("malformed")
		return
	}
	rl := &routedLink{n: n, dst: src}
	switch typ {
	case session.TypeHandshakeInit:
		n.handleInit(hs, rl)
	case session.TypeHandshakeResp:
		rl.initiator = true
		n.handleResp(hs, rl)
	case session.TypeHandshakeFinal:
		n.handleFinal(hs, rl)
	default: // a cookie reply never travels routed
		n.drops.inc("malformed")
	}
}

// routedLink carries handshake messages to a node through the mesh (msgRoutedHandshake, sealed for the
// next hop at each step). It is how an e2e handshake's answers find their way back.
type routedLink struct {
	n         *Node
	dst       session.NodeID
	initiator bool // this node started the handshake (its answer must come from dst)
}

func (l *routedLink) Send(hs []byte) error {
	n := l.n
	msgLen := routedHsHeaderLen + len(hs)
	buf := make([]byte, session.DataHeaderLen+msgLen, session.Overhead+msgLen)
	m := buf[session.DataHeaderLen:]
	m[0], m[1] = msgRoutedHandshake, defaultTTL
	putUint64(m[2:], uint64(l.dst))
	putUint64(m[10:], uint64(n.self))
	copy(m[routedHsHeaderLen:], hs)
	out, link := n.sealFor(n.table.Load(), l.dst, buf, msgLen)
	if out == nil {
		return errNoRoute
	}
	return link.Send(out)
}

func (l *routedLink) SendBatch(pkts [][]byte) error {
	for _, p := range pkts {
		if err := l.Send(p); err != nil {
			return err
		}
	}
	return nil
}

func (l *routedLink) Network() string                { return "mesh" }
func (l *routedLink) RemoteAddr() (a netip.AddrPort) { return a }
func (l *routedLink) Done() <-chan struct{}          { return nil }
func (l *routedLink) Close() error                   { return nil }

// errNoRoute: no live next hop towards the node.
var errNoRoute = errors.New("no route to the node")
