package node

// The node's side of the transparent TCP proxy (internal/proxy owns the flows, the netstack and the
// KCP conversations; DESIGN.md, "The transparent TCP proxy").
//
//	TUN read -> dataplane.Plane.Run -> Outbound -> proxyOutbound -> proxy.Outbound (owned flow, or a SYN that
//	            wantsProxyTo accepts) -> netstack
//	netstack -> proxy -> writeProxyPackets: one batched TUN write
//	proxy segments -> sendSegments: msgKCP header + sealTo in place per segment (the direct session, or
//	            the e2e session inside a msgSealed envelope) -> one SendBatch
//	underlay -> handleData (or receiveSealed) -> deliverKCP: from the node it names, for this node ->
//	            proxy.Deliver (FlushInput after the batch)
import (
	"errors"
	"net/netip"
	"time"

	"github.com/weft-vpn/weft/internal/dataplane"
	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/proxy"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/tun"
)

// kcpHeaderLen is the inner header of a KCP segment: type, TTL, destination and source node.
const kcpHeaderLen = 2 + 8 + 8

func (n *Node) startProxy() (*proxy.Proxy, error) {
	o := proxy.Options{
		Self:            n.self,
		MTU:             n.cfg.MTU,
		WriteTUN:        n.writeProxyPackets,
		TUNOffset:       tun.Headroom,
		SendSegments:    n.sendSegments,
		SegmentHeadroom: msgOffset + kcpHeaderLen,
		SegmentTailroom: 2 * session.TagLen,
		MaxSegment:      n.cfg.MTU + ipHeaderLen - kcpHeaderLen,
		Route:           n.proxyRoute,
		AllowInput:      n.proxyInputAllowed,
		Owns:            n.owns,
		KCP: proxy.KCPConfig{
			Interval: time.Duration(n.cfg.KCP.IntervalMS) * time.Millisecond,
			Window:   n.cfg.KCP.Window,
			Resend:   n.cfg.KCP.Resend,
		},
		Log: n.log,
	}
	if o.KCP.Resend == 0 {
		o.KCP.Resend = -1 // --kcp-resend 0 turns fast retransmit off
	}
	if n.fakeDev == nil {
		o.RouteBack = func(src netip.Addr) (string, bool) {
			dev, err := tun.RouteDev(src)
			return dev, err == nil && dev == n.cfg.Dev
		}
	}
	n.proxyable = n.wantsProxyTo
	return proxy.New(o)
}

// writeProxyPackets writes a batch of netstack packets into this node's TUN.
func (n *Node) writeProxyPackets(pkts [][]byte, offset int) {
	if _, err := n.dev.Write(pkts, offset); err != nil && !isClosed(err) {
		n.drops.inc("tun_write")
	}
}

// proxyRoute names the node that owns dst (the proxy's source side).
func (n *Node) proxyRoute(dst netip.Addr) (session.NodeID, bool) {
	r, ok := n.table.Load().Lookup(dst)
	return r.Node, ok
}

// owns reports whether addr belongs to node by the routing table (the proxy re-originates a flow only
// from an address the opening node owns); a refusal is counted and warned about.
func (n *Node) owns(node session.NodeID, addr netip.Addr) bool {
	if !n.local.Owns(addr) {
		if r, ok := n.table.Load().Lookup(addr); ok && r.Node == node {
			return true
		}
	}
	n.drops.inc("proxy_open_spoofed")
	n.warnSpoofed(node, addr, "proxy_open_spoofed")
	return false
}

// wantsProxyTo reports whether a new TCP flow to dst goes over the proxy.
func (n *Node) wantsProxyTo(dst netip.Addr) bool {
	tab := n.table.Load()
	r, ok := tab.Lookup(dst)
	return ok && n.wantsProxy(tab, r)
}

// wantsProxy reports whether a new TCP flow to r goes over the proxy: this node runs --tcp-proxy kcp,
// the owner allows it for that prefix, and the first hop towards the owner is a UDP session (KCP over a
// TCP underlay would only add a second layer of retransmission).
func (n *Node) wantsProxy(tab *mesh.Table, r mesh.Route) bool {
	if n.proxy == nil || n.cfg.TCPProxy != "kcp" || !r.Proxy {
		return false
	}
	info, ok := tab.Node(r.Node)
	if !ok {
		return false
	}
	hop := n.livePeer(info.NextHop)
	if hop == nil {
		return false
	}
	l := hop.sendLink()
	return l != nil && l.Network() == "udp"
}

// proxyOutbound takes a packet read from the TUN if it belongs to the proxy; it reports whether it did.
func (n *Node) proxyOutbound(ip []byte) bool {
	if n.proxy == nil || len(ip) < 20 || ip[9] != 6 {
		return false
	}
	return n.proxy.Outbound(ip, n.proxyable)
}

// sendSegments carries KCP segments to node dst (the proxy's SendSegments): each buffer has the
// segment at headroom, room for the session and inner headers before it and the AEAD tag behind it.
// They are sealed in place and leave in one SendBatch.
func (n *Node) sendSegments(dst session.NodeID, bufs [][]byte, headroom int) error {
	tab := n.table.Load()
	var out dataplane.Batch
	var bytes uint64
	for _, buf := range bufs {
		seg := len(buf) - headroom
		msgLen := kcpHeaderLen + seg
		m := buf[msgOffset:]
		m[0], m[1] = msgKCP, defaultTTL
		putUint64(m[2:], uint64(dst))
		putUint64(m[10:], uint64(n.self))
		pkt, link, queued := n.sealTo(tab, dst, buf[:cap(buf)], msgLen)
		if queued {
			continue // waits for the e2e session; KCP resends what does not get through
		}
		if pkt == nil {
			return errors.New("no route to node " + dst.String())
		}
		if out.Add(link, pkt) != nil {
			n.drops.inc("send")
		}
		bytes += uint64(seg)
	}
	if out.Flush() != nil {
		n.drops.inc("send")
	}
	c := n.trafficOf(dst)
	c.TxBytes.Add(bytes)
	c.TxPackets.Add(uint64(len(bufs)))
	return nil
}

func putUint64(b []byte, v uint64) {
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// deliverKCP hands a KCP segment that origin sent (over their direct session or their e2e session) to
// the proxy. A segment must come from the node it names as source and be for this node: KCP is never
// relayed in the clear (a relayed one travels in the e2e session), so nobody can speak for another
// node's flows.
func (n *Node) deliverKCP(origin session.NodeID, pt []byte) {
	if len(pt) < kcpHeaderLen {
		n.drops.inc("malformed")
		return
	}
	dst := session.NodeID(beUint64(pt[2:10]))
	src := session.NodeID(beUint64(pt[10:18]))
	if src != origin || dst != n.self {
		n.drops.inc("src_spoofed")
		n.warnSpoofed(origin, netip.Addr{}, "kcp_src_node_spoofed")
		return
	}
	if n.proxy == nil {
		n.drops.inc("no_proxy")
		return
	}
	c := n.trafficOf(src)
	c.RxBytes.Add(uint64(len(pt) - kcpHeaderLen))
	c.RxPackets.Add(1)
	n.proxy.Deliver(src, pt[kcpHeaderLen:])
}

// proxyInputAllowed reports whether this node re-originates proxied flows to dst.
func (n *Node) proxyInputAllowed(dst netip.Addr) bool {
	if n.cfg.NoProxyInput {
		return false
	}
	if dst == n.cfg.IPv4.Addr() {
		return true
	}
	for _, s := range n.cfg.Subnet {
		if s.Contains(dst) {
			return !n.cfg.KernelForwardOnly
		}
	}
	return false
}
