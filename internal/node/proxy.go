package node

// The transparent TCP proxy, wired into the node (DESIGN.md, "The transparent TCP proxy").
//
// Source node: tunLoop hands every TCP packet to proxyOutbound first. A packet of a flow the netstack
// owns is injected into it; a SYN (without ACK) to a prefix whose owner allows the proxy, when this node
// runs --tcp-proxy kcp and the first hop is a UDP session, is claimed and injected. The netstack's
// forwarder then calls forward: it opens a stream to the destination node over the KCP transport, waits
// for that node's verdict, and only then completes the client's handshake (or answers it with a RST), so
// connect() behaves as without a proxy. Bytes are then piped between the netstack connection and the
// stream, FIN and RST included.
//
// Destination node: the transport calls accept for each stream a source node opens. After the policy and
// route-back checks, the netstack dials FROM the original source TO the original destination; its packets
// come out of proxyOutput into this node's own TUN, so the kernel sees an ordinary inbound connection with
// the true 4-tuple, and its replies, read from the TUN, are owned by the netstack and injected back.
//
// KCP segments travel as msgKCP inner messages, addressed by node: relays forward them like IP packets.

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/proxy"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/tun"
)

const (
	// kcpHeaderLen is the inner header of a KCP segment: type, TTL, destination and source node.
	kcpHeaderLen = 2 + 8 + 8
	// openTimeout bounds how long a client's connect waits for the destination node's verdict.
	openTimeout = 15 * time.Second
	// dialTimeout bounds the destination node's dial of the original destination.
	dialTimeout = 10 * time.Second
)

// proxier is the node's proxy: one netstack for both roles, the KCP transport, and the flows in flight.
type proxier struct {
	n     *Node
	stack *proxy.Stack
	tr    *proxy.Transport
	// outBuf is the TUN write buffer of proxyOutput (the netstack calls it from one goroutine).
	outBuf []byte

	mu    sync.Mutex
	flows map[*flowRec]struct{}

	opened, refused, reset atomic.Uint64
	segBufs                sync.Pool
	wg                     sync.WaitGroup
}

// flowRec is one proxied flow as `weft proxy` lists it.
type flowRec struct {
	id        proxy.FlowID
	side      string // "source" or "destination"
	peer      session.NodeID
	start     time.Time
	state     atomic.Value // string
	up, down  atomic.Uint64
	finClient atomic.Bool // the client half-closed
	finServer atomic.Bool // the server half-closed
}

func (n *Node) startProxy() (*proxier, error) {
	p := &proxier{n: n, flows: make(map[*flowRec]struct{}), outBuf: make([]byte, tun.Headroom+65535)}
	p.segBufs.New = func() any {
		b := make([]byte, 0, session.Overhead+kcpHeaderLen+2048)
		return &b
	}
	var err error
	p.stack, err = proxy.NewStack(proxy.StackOptions{
		MTU:     n.cfg.MTU,
		Output:  p.output,
		Forward: p.forward,
		Log:     n.log,
	})
	if err != nil {
		return nil, err
	}
	resend := n.cfg.KCP.Resend
	if resend == 0 {
		resend = -1 // off, in the transport's terms
	}
	p.tr, err = proxy.NewTransport(proxy.Options{
		Self:       n.self,
		Send:       p.sendSegment,
		MaxSegment: n.cfg.MTU + ipHeaderLen - kcpHeaderLen,
		Accept:     p.accept,
		KCP: proxy.KCPConfig{
			Interval: time.Duration(n.cfg.KCP.IntervalMS) * time.Millisecond,
			Window:   n.cfg.KCP.Window,
			Resend:   resend,
			// A flow's receive window must cover its share of a long link's bandwidth-delay product.
			StreamBuffer: 4 << 20,
		},
		Log: n.log,
	})
	if err != nil {
		p.stack.Close()
		return nil, err
	}
	return p, nil
}

// close resets every flow and stops the netstack and the transport.
func (p *proxier) close() {
	p.tr.Close()
	p.stack.Close()
	p.wg.Wait()
}

// output writes a packet the netstack emits into this node's TUN.
func (p *proxier) output(pkt []byte) {
	n := copy(p.outBuf[tun.Headroom:], pkt)
	if _, err := p.n.dev.Write([][]byte{p.outBuf[:tun.Headroom+n]}, tun.Headroom); err != nil && !isClosed(err) {
		p.n.drops.inc("tun_write")
	}
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
func (n *Node) proxyOutbound(tab *mesh.Table, ip []byte, dst netip.Addr) bool {
	if n.proxy == nil || len(ip) < 20 || ip[9] != 6 {
		return false
	}
	st := n.proxy.stack
	if st.Owns(ip) {
		st.Inject(ip)
		return true
	}
	ihl := int(ip[0]&0x0f) * 4
	if len(ip) < ihl+14 {
		return false
	}
	flags := ip[ihl+13]
	if flags&0x02 == 0 || flags&0x10 != 0 { // a SYN without ACK opens a flow
		return false
	}
	r, ok := tab.Lookup(dst)
	if !ok || !n.wantsProxy(tab, r) {
		return false
	}
	src := netip.AddrFrom4([4]byte(ip[12:16]))
	sport := uint16(ip[ihl])<<8 | uint16(ip[ihl+1])
	dport := uint16(ip[ihl+2])<<8 | uint16(ip[ihl+3])
	st.Claim(proxy.FlowID{Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, dport)})
	st.Inject(ip)
	return true
}

// sendSegment carries one KCP segment to node dst (the transport's Send).
func (p *proxier) sendSegment(dst session.NodeID, seg []byte) error {
	n := p.n
	bp := p.segBufs.Get().(*[]byte)
	defer p.segBufs.Put(bp)
	msgLen := kcpHeaderLen + len(seg)
	buf := (*bp)[:session.DataHeaderLen+msgLen]
	if cap(buf) < session.Overhead+msgLen {
		return errors.New("kcp segment too large")
	}
	m := buf[session.DataHeaderLen:]
	m[0], m[1] = msgKCP, defaultTTL
	putUint64(m[2:], uint64(dst))
	putUint64(m[10:], uint64(n.self))
	copy(m[kcpHeaderLen:], seg)
	out, link := n.sealFor(n.table.Load(), dst, buf, msgLen)
	if out == nil {
		return errors.New("no route to node " + dst.String())
	}
	c := n.trafficOf(dst)
	c.txBytes.Add(uint64(len(seg)))
	c.txPackets.Add(1)
	return link.Send(out)
}

func putUint64(b []byte, v uint64) {
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// receiveKCP delivers a KCP segment addressed to this node, or relays it towards its destination node.
func (n *Node) receiveKCP(pkt []byte, pt []byte) {
	if len(pt) < kcpHeaderLen {
		n.drops.inc("malformed")
		return
	}
	dst := session.NodeID(beUint64(pt[2:10]))
	src := session.NodeID(beUint64(pt[10:18]))
	if dst == n.self {
		if n.proxy == nil {
			n.drops.inc("no_proxy")
			return
		}
		c := n.trafficOf(src)
		c.rxBytes.Add(uint64(len(pt) - kcpHeaderLen))
		c.rxPackets.Add(1)
		n.proxy.tr.Deliver(src, pt[kcpHeaderLen:])
		return
	}
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

// forward handles a new flow on the source node: ask the destination node, then complete or refuse the
// client's handshake.
func (p *proxier) forward(r *proxy.Request) {
	id := r.ID()
	tab := p.n.table.Load()
	route, ok := tab.Lookup(id.Dst.Addr())
	if !ok {
		p.refused.Add(1)
		r.Reject()
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), openTimeout)
	st, err := p.tr.Open(ctx, route.Node, proxy.OpenRequest{Src: id.Src, Dst: id.Dst})
	cancel()
	if err != nil {
		p.refused.Add(1)
		p.n.log.Debug("proxied flow refused", "flow", id.String(), "err", err)
		r.Reject()
		return
	}
	conn, err := r.Accept()
	if err != nil {
		st.Reset()
		st.Close()
		return
	}
	p.run(id, "source", route.Node, conn, st)
}

// accept handles a stream a source node opened: checks, then the spoofed dial.
func (p *proxier) accept(src session.NodeID, req proxy.OpenRequest, st *proxy.Stream) {
	n := p.n
	id := proxy.FlowID{Src: req.Src, Dst: req.Dst}
	if !n.proxyInputAllowed(req.Dst.Addr()) {
		p.refused.Add(1)
		st.Refuse(proxy.RefusedPolicy)
		st.Close()
		return
	}
	// The reply must go back through the TUN; a source this node has no TUN route for (a host on the
	// source node's LAN that it does not announce) would leak a SYN-ACK elsewhere.
	if n.fakeDev == nil {
		if dev, err := tun.RouteDev(req.Src.Addr()); err != nil || dev != n.cfg.Dev {
			p.refused.Add(1)
			n.log.Warn("proxied flow refused: no route back through the tunnel", "flow", id.String(), "route_dev", dev)
			st.Refuse(proxy.RefusedPolicy)
			st.Close()
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	conn, err := p.stack.Dial(ctx, id)
	cancel()
	if err != nil {
		p.refused.Add(1)
		reason := proxy.RefusedUnreachable
		if errors.Is(err, syscall.ECONNREFUSED) {
			reason = proxy.RefusedConn
		}
		st.Refuse(reason)
		st.Close()
		return
	}
	if err := st.Accept(); err != nil {
		conn.Abort()
		st.Close()
		return
	}
	p.run(id, "destination", src, st, conn)
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

// halfConn is either end of a proxied flow: a netstack connection or a stream.
type halfConn interface {
	io.ReadWriter
	CloseWrite() error
	Close() error
}

func abort(c halfConn) {
	switch c := c.(type) {
	case proxy.Conn:
		c.Abort()
	case *proxy.Stream:
		c.Reset()
	}
	c.Close()
}

// run pipes a flow both ways until both directions ended (FIN each way) or one end reset.
func (p *proxier) run(id proxy.FlowID, side string, peer session.NodeID, client, server halfConn) {
	rec := &flowRec{id: id, side: side, peer: peer, start: time.Now()}
	rec.state.Store("established")
	p.opened.Add(1)
	p.mu.Lock()
	p.flows[rec] = struct{}{}
	p.mu.Unlock()

	var resetOnce sync.Once
	failed := make(chan struct{})
	fail := func() {
		resetOnce.Do(func() {
			p.reset.Add(1)
			rec.state.Store("closing")
			close(failed)
			abort(client)
			abort(server)
		})
	}
	copyHalf := func(dst, src halfConn, count *atomic.Uint64, fin *atomic.Bool) {
		buf := make([]byte, 32<<10)
		for {
			k, err := src.Read(buf)
			if k > 0 {
				if _, werr := dst.Write(buf[:k]); werr != nil {
					fail()
					return
				}
				count.Add(uint64(k))
			}
			if errors.Is(err, io.EOF) {
				fin.Store(true)
				rec.state.Store("half-closed")
				if dst.CloseWrite() != nil {
					fail()
				}
				return
			}
			if err != nil {
				fail()
				return
			}
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); copyHalf(server, client, &rec.up, &rec.finClient) }()
	go func() { defer wg.Done(); copyHalf(client, server, &rec.down, &rec.finServer) }()
	wg.Wait()
	select {
	case <-failed:
	default:
		rec.state.Store("closing")
		client.Close()
		server.Close()
	}
	p.mu.Lock()
	delete(p.flows, rec)
	p.mu.Unlock()
}

// closePeer resets the flows with a node that is no longer reachable.
func (p *proxier) closePeer(id session.NodeID) { p.tr.ClosePeer(id) }

// snapshot lists the flows in flight.
func (p *proxier) snapshot() []*flowRec {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*flowRec, 0, len(p.flows))
	for r := range p.flows {
		out = append(out, r)
	}
	return out
}
