package node

// Handshakes and dialling. Every underlay packet enters through handlePacket: types 1-3 are the three
// Noise XXpsk0 messages, type 4 is data (dataplane.go). An initiator keeps its state in the handshake
// table (pending.go) under its local index until the answer arrives or HandshakeTimeout passes; a
// responder keeps its state there until message 3 arrives.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/weft-vpn/weft/internal/config"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/underlay"
)

type pendingHandshake struct {
	mu      sync.Mutex // serialises Finish (readers of several sockets)
	init    *session.Initiator
	resp    *session.Responder
	started time.Time
	// done, for an initiator started by a dialer, receives the peer's ID (or 0 on failure).
	done chan session.NodeID
	// want is, for an e2e handshake (through the mesh), the node it is for (0 for a direct one); its
	// answers must come through the mesh, a direct handshake's over an underlay link.
	want   session.NodeID
	routed bool
	// msg1 is an initiator's message 1 (without its mac2 trailer), sent again with a cookie when the
	// responder asks for one; resends counts those.
	msg1    []byte
	resends int
	// responder: this node answered a message 1 from src (counted against the table's caps).
	responder bool
	src       netip.Addr
}

// routedOK reports whether a handshake answer that came over from fits ph (an e2e handshake is
// answered through the mesh, by the node it is for; a direct one over an underlay link).
func (ph *pendingHandshake) routedOK(from underlay.Link) bool {
	rl, routed := from.(*routedLink)
	if routed != ph.routed {
		return false
	}
	return !routed || ph.want == 0 || rl.dst == ph.want
}

// handlePacket handles one underlay packet (the plane's Demux). It returns the buffer to write to the
// TUN (the IP packet at dataplane.TUNWriteOffset) when the packet carried one for this node, else nil.
func (n *Node) handlePacket(pkt []byte, from underlay.Link) []byte {
	typ, ok := session.PacketType(pkt)
	if !ok {
		n.drops.inc("malformed")
		return nil
	}
	switch typ {
	case session.TypeData:
		return n.handleData(pkt, from)
	case session.TypeHandshakeInit:
		n.handleInit(pkt, from)
	case session.TypeHandshakeResp:
		n.handleResp(pkt, from)
	case session.TypeHandshakeFinal:
		n.handleFinal(pkt, from)
	case session.TypeCookieReply:
		n.handleCookie(pkt, from)
	case session.TypeProbe:
		n.handleProbe(pkt, from)
	default:
		n.drops.inc("malformed")
	}
	return nil
}

// handleCookie takes a responder's cookie for a handshake this node started over from, and sends that
// handshake's message 1 again with it (at most maxCookieResends times per handshake).
func (n *Node) handleCookie(pkt []byte, from underlay.Link) {
	idx, ph := n.pendingFor(pkt)
	if ph == nil || ph.responder || ph.routed {
		n.drops.inc("unknown_session")
		return
	}
	ph.mu.Lock()
	msg1 := ph.msg1
	ph.mu.Unlock()
	if msg1 == nil {
		n.drops.inc("unknown_session")
		return
	}
	cookie, ok := session.OpenCookieReply(n.scfg.PSK, pkt, msg1)
	if !ok {
		n.drops.inc("cookie_invalid") // a forged reply costs the genuine handshake nothing
		return
	}
	ph.mu.Lock()
	ph.resends++
	tries := ph.resends
	ph.mu.Unlock()
	if tries > maxCookieResends {
		n.drops.inc("unknown_session")
		return
	}
	n.hs.setCookie(from.RemoteAddr(), cookie, time.Now())
	n.log.Debug("responder under load: message 1 again with its cookie", "to", from.RemoteAddr(), "index", idx)
	if err := from.Send(session.WithMAC2(msg1, &cookie)); err != nil {
		n.log.Debug("send handshake", "to", from.RemoteAddr(), "err", err)
	}
}

// indexUsed reports whether i is the local index of a session (direct or e2e); the handshake table
// checks its own entries.
func (n *Node) indexUsed(i uint32) bool {
	return n.peerTab.hasIndex(i) || n.e2e.hasIndex(i)
}

// initiate sends handshake message 1 over link. done (optional) learns the outcome.
func (n *Node) initiate(link underlay.Link, done chan session.NodeID) {
	ph := &pendingHandshake{started: time.Now(), done: done}
	if rl, ok := link.(*routedLink); ok {
		ph.routed, ph.want = true, rl.dst
	}
	idx, _ := n.hs.reserve(ph, n.indexUsed) // an initiator is never refused
	init, msg1, err := session.NewInitiator(n.scfg, idx, nil)
	if err != nil {
		n.hs.remove(idx, ph)
		n.log.Error("handshake init", "err", err)
		return
	}
	ph.mu.Lock()
	ph.init, ph.msg1 = init, msg1
	ph.mu.Unlock()
	var cookie *[session.MACLen]byte
	if !ph.routed {
		cookie = n.hs.cookieFor(link.RemoteAddr(), time.Now())
	}
	if err := link.Send(session.WithMAC2(msg1, cookie)); err != nil {
		n.log.Debug("send handshake", "to", link.RemoteAddr(), "err", err)
	}
}

// handleInit answers a handshake message 1, within the limits of the handshake table (pending.go): its
// source's rate, the responders pending from it and in all, and the session layer's replay and clock
// checks, all before any Diffie-Hellman work.
func (n *Node) handleInit(pkt []byte, from underlay.Link) {
	msg1, mac2, ok := session.SplitMAC2(pkt)
	if !ok {
		n.drops.inc("malformed")
		return
	}
	src := sourceOf(from)
	if !n.hs.allowInit(src) {
		n.drops.inc("handshake_rate")
		return
	}
	rl, routed := from.(*routedLink)
	// Under load a UDP sender proves its address with a cookie (TCP's own handshake already did).
	if !routed && from.Network() == "udp" && n.hs.underLoad() {
		now := time.Now()
		if !n.cookies.Valid(msg1, mac2, from.RemoteAddr(), now) {
			// Prove the address first: a forged source never sees this reply.
			n.drops.inc("handshake_cookie")
			if err := from.Send(n.cookies.Reply(msg1, from.RemoteAddr(), now)); err != nil {
				n.log.Debug("send cookie reply", "to", from.RemoteAddr(), "err", err)
			}
			return
		}
	}
	if routed {
		// The answer must find its way back: a node not in the routing table (one a member made up)
		// costs no Diffie-Hellman work.
		if _, ok := n.table.Load().Node(rl.dst); !ok {
			n.drops.inc("no_route")
			return
		}
	}
	ph := &pendingHandshake{started: time.Now(), routed: routed, responder: true, src: src}
	idx, err := n.hs.reserve(ph, n.indexUsed)
	if err != nil {
		n.drops.inc("handshake_flood") // logged with the other limits (logLimits)
		return
	}
	ph.mu.Lock()
	resp, msg2, _, err := session.Respond(n.scfg, msg1, idx, n.hello)
	ph.resp = resp
	ph.mu.Unlock()
	if err != nil {
		n.hs.remove(idx, ph)
		n.initRefused(err, from)
		return
	}
	if err := from.Send(msg2); err != nil {
		n.log.Debug("send handshake response", "to", from.RemoteAddr(), "err", err)
	}
}

// initRefused counts (and for a wrong secret or clock, logs once per 10 s per address) why a
// message 1 was not answered.
func (n *Node) initRefused(err error, from underlay.Link) {
	switch {
	case errors.Is(err, session.ErrReplayedInit):
		n.drops.inc("handshake_replay")
	case errors.Is(err, session.ErrStaleInit):
		n.drops.inc("handshake_stale")
		if n.hs.logDue(sourceOf(from), time.Now()) {
			n.log.Warn("refused a handshake from " + from.Network() + "://" + from.RemoteAddr().String() + ": " + err.Error() +
				": a replay of an old message, or the two machines' clocks differ (check NTP on both); no session")
		}
	case errors.Is(err, session.ErrPSKMismatch):
		n.drops.inc("psk_mismatch")
		if n.hs.logDue(sourceOf(from), time.Now()) {
			hint := ""
			if n.certs != nil && n.cfg.NetworkSecret == "" {
				hint = " (in certificate mode without a network secret: another --ca)"
			}
			n.log.Warn("network name or secret mismatch from " + from.RemoteAddr().String() +
				": a node tried to join with another --network-name or --network-secret" + hint +
				" (or runs a weft release with another protocol version); no session")
		}
	default:
		n.drops.inc("malformed")
	}
}

// pendingFor returns the pending handshake a type-2 or type-3 packet names, without removing it: a
// packet that fails authentication must not cost the genuine one its handshake (the session layer
// leaves a handshake unchanged on a failed message).
func (n *Node) pendingFor(pkt []byte) (uint32, *pendingHandshake) {
	idx, ok := session.ReceiverIndex(pkt)
	if !ok {
		return 0, nil
	}
	return idx, n.hs.get(idx)
}

// donePending removes a handshake that completed.
func (n *Node) donePending(idx uint32, ph *pendingHandshake) { n.hs.remove(idx, ph) }

func (n *Node) handleResp(pkt []byte, from underlay.Link) {
	idx, ph := n.pendingFor(pkt)
	if ph == nil || ph.responder || !ph.routedOK(from) {
		n.drops.inc("unknown_session")
		return
	}
	ph.mu.Lock()
	if ph.init == nil { // still being set up
		ph.mu.Unlock()
		n.drops.inc("unknown_session")
		return
	}
	kp, msg3, peerHello, err := ph.init.Finish(pkt, n.hello)
	ph.mu.Unlock()
	if err != nil {
		// Forged, corrupted or a duplicate: the handshake stays pending for the genuine answer (or
		// until it times out).
		n.drops.inc("decrypt")
		return
	}
	n.donePending(idx, ph)
	if err := from.Send(msg3); err != nil {
		n.log.Debug("send handshake final", "to", from.RemoteAddr(), "err", err)
	}
	if n.establish(kp, from, peerHello) {
		ph.finish(kp.PeerID())
	} else {
		ph.finish(0)
	}
}

func (n *Node) handleFinal(pkt []byte, from underlay.Link) {
	idx, ph := n.pendingFor(pkt)
	if ph == nil || !ph.responder || !ph.routedOK(from) {
		n.drops.inc("unknown_session")
		return
	}
	ph.mu.Lock()
	if ph.resp == nil {
		ph.mu.Unlock()
		n.drops.inc("unknown_session")
		return
	}
	kp, peerHello, err := ph.resp.Finish(pkt)
	ph.mu.Unlock()
	if err != nil {
		n.drops.inc("decrypt")
		return
	}
	n.donePending(idx, ph)
	n.establish(kp, from, peerHello)
}

func (ph *pendingHandshake) finish(id session.NodeID) {
	if ph.done != nil {
		select {
		case ph.done <- id:
		default:
		}
	}
}

// tickHandshakes expires unanswered handshakes and old rate-limit entries.
func (n *Node) tickHandshakes(now time.Time) {
	failed := n.hs.expire(now, n.timers.HandshakeTimeout)
	n.peerTab.each(func(p *peer) {
		if p.rekeying {
			if kp := p.cur.Load(); kp != nil && now.Sub(kp.Created()) > n.timers.RekeyAfter+3*n.timers.HandshakeTimeout {
				p.rekeying = false // try again
			}
		}
	})
	for _, ph := range failed {
		ph.finish(0)
	}
}

// unknownSession answers a data packet for a session this node does not have (typically: this node
// restarted and the peer still uses the old keys) by starting a handshake towards the sender, at most
// once per second per source address and hintRate per second in all. A forged packet can only make
// us send one handshake message, and a flood of them no more than that rate.
func (n *Node) unknownSession(from underlay.Link) {
	if from.Network() != "udp" {
		return
	}
	if !n.hs.allowHint(from.RemoteAddr().Addr(), time.Now()) {
		return
	}
	n.initiate(from, nil)
}

// dialLoop keeps a session to one --peer address for the life of the node: resolve, dial, handshake,
// then wait until that peer dies (or its TCP connection closes), and start again. Failed attempts back
// off from BackoffMin to BackoffMax, forever.
func (n *Node) dialLoop(target config.URI) {
	backoff := n.timers.BackoffMin
	failures := 0
	var lastAdvice time.Time
	for n.ctx.Err() == nil {
		id, link, err := n.dialOnce(target)
		if err == nil {
			failures = 0
			backoff = n.timers.BackoffMin
			n.waitPeerGone(id, link)
			continue
		}
		failures++
		n.log.Debug("peer attempt failed", "peer", target.String(), "attempt", failures, "err", err)
		if failures >= 3 && time.Since(lastAdvice) > 30*time.Second {
			lastAdvice = time.Now()
			n.log.Warn(fmt.Sprintf("no valid handshake answer from %s after %d attempts (%v): the node may be down or unreachable, "+
				"a firewall may drop %s port %d, its --network-name / --network-secret differ from this node's, "+
				"or the two machines' clocks differ by more than %v",
				target, failures, err, target.Scheme, target.Port, session.MaxClockSkew))
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, n.timers.BackoffMax)
	}
}

func (n *Node) dialOnce(target config.URI) (session.NodeID, underlay.Link, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.timers.HandshakeTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", target.Host)
	if err != nil || len(addrs) == 0 {
		return 0, nil, fmt.Errorf("resolve %s: %w", target.Host, err)
	}
	// Prefer IPv4 when the name has both: the underlay sockets of most nodes are IPv4.
	addr := addrs[0]
	for _, a := range addrs {
		if a.Unmap().Is4() {
			addr = a.Unmap()
			break
		}
	}
	n.dialAddrs.Store(target, addr)
	ap := netip.AddrPortFrom(addr, target.Port)
	link, err := n.tr.Dial(ctx, target.Scheme, ap)
	if err != nil {
		return 0, nil, err
	}
	done := make(chan session.NodeID, 1)
	n.initiate(link, done)
	select {
	case id := <-done:
		if id == 0 {
			if target.Scheme == "tcp" {
				link.Close()
			}
			return 0, nil, errors.New("handshake refused or failed")
		}
		return id, link, nil
	case <-n.ctx.Done():
		return 0, nil, n.ctx.Err()
	case <-time.After(n.timers.HandshakeTimeout + timerTick*2):
		if target.Scheme == "tcp" {
			link.Close()
		}
		return 0, nil, errors.New("no answer")
	}
}

// waitPeerGone blocks until the peer reached through a dial is dead or the dialled TCP connection closed.
func (n *Node) waitPeerGone(id session.NodeID, link underlay.Link) {
	down := n.peerTab.downChan(id)
	if down == nil {
		return
	}
	select {
	case <-n.ctx.Done():
	case <-down:
	case <-link.Done():
		// Our TCP connection died; if the peer is still reachable another way, it stays up.
	}
}
