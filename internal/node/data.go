package node

// Data messages: the node's side of the packet path (internal/dataplane holds the rest).
//
// Outbound: the plane reads the TUN and routes each packet; it seals through sealer.SealTo (e2e.go):
// the direct peer's current keypair (seal), or the e2e session inside an envelope for the next hop.
//
// Inbound (handlePacket -> handleData, on the underlay reader goroutines): receiver index -> keypair ->
// Open in place -> the peer's liveness and address (the source of its last authenticated packet) -> the
// inner message by type: an IP packet goes to the plane's Deliver (destination ours, source the peer's)
// and, accepted, back to the plane's TUN batch from the same buffer; pings, pongs and announcements go to
// the control plane, KCP segments to the proxy, sealed envelopes to e2e.go.

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/weft-vpn/weft/internal/dataplane"
	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/underlay"
)

// sealer is the node's dataplane.Sealer.
type sealer struct{ n *Node }

func (s sealer) SealTo(tab *mesh.Table, dst session.NodeID, buf []byte, msgLen int) ([]byte, underlay.Link, bool) {
	return s.n.sealTo(tab, dst, buf, msgLen)
}

// afterReceive runs after each underlay read's TUN write: the ACKs that read's KCP segments owe leave,
// one batch per flow.
func (n *Node) afterReceive() {
	if n.proxy != nil {
		n.proxy.FlushInput()
	}
}

// sealFor seals the inner message at buf[DataHeaderLen:DataHeaderLen+msgLen] for the next hop towards
// node and returns the packet and the link to send it on (nil if there is no way there).
func (n *Node) sealFor(tab *mesh.Table, node session.NodeID, buf []byte, msgLen int) ([]byte, underlay.Link) {
	info, ok := tab.Node(node)
	if !ok {
		n.drops.inc("no_route")
		return nil, nil
	}
	p := n.livePeer(info.NextHop)
	if p == nil {
		n.drops.inc("no_route")
		return nil, nil
	}
	return n.seal(p, buf, msgLen)
}

func (n *Node) seal(p *peer, buf []byte, msgLen int) ([]byte, underlay.Link) {
	kp, link := p.cur.Load(), p.sendLink()
	if kp == nil || link == nil {
		n.drops.inc("no_session")
		return nil, nil
	}
	out, err := kp.SealInPlace(buf, msgLen)
	if err != nil {
		n.drops.inc("seal")
		return nil, nil
	}
	return out, link
}

// sealAndSend seals and sends one message to a direct peer.
func (n *Node) sealAndSend(p *peer, buf []byte, msgLen int) bool {
	out, link := n.seal(p, buf, msgLen)
	if out == nil {
		return false
	}
	if err := link.Send(out); err != nil {
		n.drops.inc("send")
		return false
	}
	return true
}

// sendControl sends a small control message (ping, pong, announce) to a direct peer.
func (n *Node) sendControl(p *peer, msg []byte) {
	buf := make([]byte, session.DataHeaderLen+len(msg), session.Overhead+len(msg))
	copy(buf[session.DataHeaderLen:], msg)
	n.sealAndSend(p, buf, len(msg))
}

// handleData authenticates and dispatches one type-4 packet. It returns the buffer to write to the TUN
// when the packet carried an IP packet for this node.
func (n *Node) handleData(pkt []byte, from underlay.Link) []byte {
	idx, ok := session.ReceiverIndex(pkt)
	if !ok {
		n.drops.inc("malformed")
		return nil
	}
	e := n.peerTab.byIndex(idx)
	if e == nil {
		n.drops.inc("unknown_session")
		n.unknownSession(from)
		return nil
	}
	pt, err := e.kp.Open(pkt[session.DataHeaderLen:session.DataHeaderLen], pkt)
	if err != nil {
		if errors.Is(err, session.ErrReplay) {
			n.drops.inc("replay")
		} else {
			n.drops.inc("decrypt")
		}
		return nil
	}
	p := e.peer
	p.lastRecv.Store(time.Now().UnixNano())
	if cur := p.link.Load(); cur == nil || cur.l != from {
		if cur == nil || cur.l.RemoteAddr() != from.RemoteAddr() || cur.l.Network() != from.Network() {
			p.link.Store(&linkBox{from})
		}
	}
	if len(pt) == 0 {
		n.drops.inc("malformed")
		return nil
	}
	switch pt[0] {
	case msgIP:
		if len(pt) < ipHeaderLen {
			n.drops.inc("malformed")
			return nil
		}
		if length, ok := n.plane.Deliver(p.id, pt[ipHeaderLen:]); ok {
			return pkt[:dataplane.TUNWriteOffset+length]
		}
	case msgPing:
		if len(pt) != pingLen {
			n.drops.inc("malformed")
			return nil
		}
		pt[0] = msgPong
		n.sendControl(p, pt)
	case msgPong:
		if len(pt) != pingLen {
			n.drops.inc("malformed")
			return nil
		}
		n.onPong(p, binary.BigEndian.Uint32(pt[1:5]))
	case msgAnnounce:
		n.receiveAnnounce(p, pt[1:])
	case msgKCP:
		n.deliverKCP(p.id, pt)
	case msgSealed:
		return n.receiveSealed(p, pkt, pt)
	case msgRoutedHandshake:
		n.receiveRoutedHandshake(p, pkt, pt)
	case msgRefused:
		n.receiveRefused(p, pt[1:min(len(pt), 513)])
	case msgObserved:
		n.receiveObserved(p, pt)
	case msgProbeReq:
		n.receiveProbeReq(p, pt)
	case msgProbed:
		n.receiveProbed(p, pt)
	default:
		n.drops.inc("malformed")
	}
	return nil
}

func beUint64(b []byte) uint64 {
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

// warnSpoofed logs, at most once per forgedLogEvery and peer, that peer sent a packet whose source it
// does not own.
func (n *Node) warnSpoofed(from session.NodeID, src netip.Addr, why string) {
	if n.warnDue(&n.spoofedAt, from) {
		n.log.Warn("dropped packets from node "+from.String()+" with a source address it does not own", "src", src, "reason", why)
	}
}
