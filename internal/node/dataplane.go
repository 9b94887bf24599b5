package node

// The data plane.
//
// Outbound (tunLoop): the kernel routes a packet for a remote virtual IP or exposed subnet into the TUN.
// tunLoop reads a batch of packets (the TUN splits a TSO super-packet into up to 128 segments), each into
// its own buffer at offset tunOffset so that the session header (16 bytes) and the inner header (type,
// TTL) fit in front of it and the AEAD tag behind it. For each packet: route lookup on the destination
// (mesh.Table, an immutable snapshot behind an atomic pointer) -> owner node -> next hop peer ->
// SealInPlace with that peer's current keypair. Consecutive packets for the same link leave in one
// SendBatch (sendmmsg). No copy and no allocation per packet.
//
// Inbound (handlePackets and handleData, on the underlay reader goroutines, a recvmmsg batch at a time):
// receiver index -> keypair -> Open in place -> inner message. An IP packet whose destination is this
// node (its virtual IP or an exposed subnet) joins the batch written to the TUN after the whole read, from
// the same buffer; any other is relayed: TTL decremented, re-sealed in place for the next hop, sent.
// Pings, pongs and announcements go to the control plane.

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/tun"
	"github.com/weft-vpn/weft/internal/underlay"
)

// tunOffset is where an IP packet starts in a buffer written to the TUN: behind one session header and
// the inner IP header, where a packet from a direct peer sits once opened in place.
const tunOffset = session.DataHeaderLen + ipHeaderLen

// tunReadOffset is where a packet read from the TUN starts in its buffer: room for the inner IP header
// at msgOffset and, in front of it, for the e2e header, the envelope and the hop header a relayed
// packet needs (e2e.go). Behind it there is room for two tags.
const tunReadOffset = msgOffset + ipHeaderLen

func (n *Node) tunLoop(errc chan<- error) {
	batch := n.dev.BatchSize()
	bufs := make([][]byte, batch)
	sizes := make([]int, batch)
	for i := range bufs {
		bufs[i] = make([]byte, tunReadOffset+65535+2*session.TagLen)
	}
	var out outBatch
	for {
		k, err := n.dev.Read(bufs, sizes, tunReadOffset)
		tab := n.table.Load()
		for i := 0; i < k; i++ {
			n.sendIP(tab, bufs[i][:cap(bufs[i])], sizes[i], &out)
		}
		out.flush(n)
		if err != nil {
			if isClosed(err) || n.ctx.Err() != nil {
				return
			}
			if errors.Is(err, tun.ErrTooManySegments) {
				n.drops.inc("tun_read")
				continue
			}
			errc <- err
			return
		}
	}
}

// ipv4Addrs returns the source and destination of an IPv4 packet and its length from its header (which
// may be shorter than the slice).
func ipv4Addrs(ip []byte) (src, dst netip.Addr, length int, ok bool) {
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return src, dst, 0, false
	}
	length = int(ip[2])<<8 | int(ip[3])
	if length < 20 || length > len(ip) {
		return src, dst, 0, false
	}
	return netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])), length, true
}

// outBatch collects sealed packets for one link so they leave in one SendBatch.
type outBatch struct {
	link underlay.Link
	pkts [][]byte
}

func (b *outBatch) add(n *Node, l underlay.Link, pkt []byte) {
	if b.link != l {
		b.flush(n)
		b.link = l
	}
	b.pkts = append(b.pkts, pkt)
}

func (b *outBatch) flush(n *Node) {
	if len(b.pkts) > 0 {
		if err := b.link.SendBatch(b.pkts); err != nil {
			n.drops.inc("send")
		}
	}
	clear(b.pkts)
	b.pkts = b.pkts[:0]
	b.link = nil
}

// sendIP routes one packet read from the TUN; buf holds it at buf[tunReadOffset:tunReadOffset+size].
// The sealed packet joins out.
func (n *Node) sendIP(tab *mesh.Table, buf []byte, size int, out *outBatch) {
	src, dst, length, ok := ipv4Addrs(buf[tunReadOffset : tunReadOffset+size])
	if !ok {
		n.drops.inc("not_ipv4")
		return
	}
	if !n.isLocal(src) {
		// This node speaks only for its own addresses: its virtual IP and the subnets it exposes.
		n.drops.inc("src_not_owned")
		return
	}
	if n.proxyOutbound(buf[tunReadOffset : tunReadOffset+length]) {
		return
	}
	r, ok := tab.Lookup(dst)
	if !ok {
		n.drops.inc("no_route")
		return
	}
	buf[msgOffset] = msgIP
	buf[msgOffset+1] = defaultTTL
	pkt, link, _ := n.sealTo(tab, r.Node, buf, ipHeaderLen+length)
	if pkt == nil {
		return
	}
	out.add(n, link, pkt)
	c := n.trafficOf(r.Node)
	c.txBytes.Add(uint64(length))
	c.txPackets.Add(1)
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
		if length, ok := n.deliverIP(p.id, pt[ipHeaderLen:]); ok {
			return pkt[:tunOffset+length]
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
	default:
		n.drops.inc("malformed")
	}
	return nil
}

func beUint64(b []byte) uint64 {
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

// deliverIP decides whether an IP packet that origin sent this node (over their direct session, or
// their e2e session) goes into the TUN: its destination must be this node's and its source an address
// origin owns. Nothing is relayed at this level (relays forward msgSealed envelopes, e2e.go). It returns
// the packet's length.
func (n *Node) deliverIP(origin session.NodeID, ip []byte) (int, bool) {
	src, dst, length, ok := ipv4Addrs(ip)
	if !ok {
		n.drops.inc("malformed")
		return 0, false
	}
	if !n.isLocal(dst) {
		n.drops.inc("not_local")
		return 0, false
	}
	owner, why := n.checkSource(n.table.Load(), src)
	if why == "" && owner != origin {
		why = "src_not_sender"
	}
	if why != "" {
		n.drops.inc(why)
		n.warnSpoofed(origin, src, why)
		return 0, false
	}
	c := n.trafficOf(owner)
	c.rxBytes.Add(uint64(length))
	c.rxPackets.Add(1)
	return length, true
}

// checkSource returns the node owning src by the routing table, or the drop reason: one of this node's
// own addresses as source (src_spoofed), or an address no node owns (src_unknown). The caller compares
// the owner with the authenticated origin of the packet.
func (n *Node) checkSource(tab *mesh.Table, src netip.Addr) (owner session.NodeID, why string) {
	if n.isLocal(src) {
		return 0, "src_spoofed" // our own address, from someone else
	}
	r, ok := tab.Lookup(src)
	if !ok {
		return 0, "src_unknown"
	}
	return r.Node, ""
}

// warnSpoofed logs, at most once per forgedLogEvery and peer, that peer sent a packet whose source it
// does not own.
func (n *Node) warnSpoofed(from session.NodeID, src netip.Addr, why string) {
	if n.warnDue(&n.spoofedAt, from) {
		n.log.Warn("dropped packets from node "+from.String()+" with a source address it does not own", "src", src, "reason", why)
	}
}

// isLocal reports whether dst belongs to this node: its virtual IP or a subnet it exposes.
func (n *Node) isLocal(dst netip.Addr) bool {
	if dst == n.cfg.IPv4.Addr() {
		return true
	}
	for _, s := range n.cfg.Subnet {
		if s.Contains(dst) {
			return true
		}
	}
	return false
}
