package proxy

// Proxy is the node's transparent TCP proxy: one netstack for both roles, the KCP transport, and the
// flows in flight. The node talks to it through a narrow API: Outbound for TCP packets read from the TUN,
// Deliver/FlushInput for segments from other nodes, ClosePeer for a lost node; the Proxy calls back
// Options.WriteTUN (netstack's packets, batched), Options.SendSegments (KCP segments to a node, batched)
// and the policy functions.
//
// Source node: Outbound gets every TCP packet read from the TUN. A packet of a flow the netstack owns is
// injected into it; a SYN (without ACK) the node's policy chooses to proxy is claimed and injected. The
// netstack's forwarder calls forward: it opens a conversation to the destination node, waits for that
// node's verdict, and only then completes the client's handshake (or answers it with a RST), so connect()
// behaves as without a proxy. Bytes are then piped between the netstack connection and the stream, FIN
// and RST included.
//
// Destination node: the transport calls accept for each conversation a source node opens. After the
// policy and route-back checks, the netstack dials FROM the original source TO the original
// destination; its packets leave through WriteTUN into this node's own TUN, so the kernel sees an
// ordinary inbound connection with the true 4-tuple, and its replies, read from the TUN, reach Outbound,
// are owned by the netstack and injected back.

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weft-vpn/weft/internal/session"
)

const (
	// openWait bounds how long a client's connect waits for the destination node's verdict.
	openWait = 15 * time.Second
	// dialTimeout bounds the destination node's dial of the original destination.
	dialTimeout = 10 * time.Second
	// copyBuf is the size of the pooled buffers a flow borrows while bytes move.
	copyBuf = 64 << 10
)

// Options configure a Proxy.
type Options struct {
	// Self is this node's ID.
	Self session.NodeID
	// MTU is the TUN device's MTU (the netstack NIC's). Required.
	MTU int
	// WriteTUN writes netstack's packets into the TUN in one batched write: each is pkts[i][offset:].
	// Required.
	WriteTUN func(pkts [][]byte, offset int)
	// TUNOffset is the headroom WriteTUN needs before each packet.
	TUNOffset int
	// SendSegments, SegmentHeadroom, SegmentTailroom, MaxSegment: see Options.Send, Headroom,
	// Tailroom and MaxSegment of the Transport. SendSegments is required.
	SendSegments                     func(dst session.NodeID, bufs [][]byte, headroom int) error
	SegmentHeadroom, SegmentTailroom int
	MaxSegment                       int
	// Route returns the node that re-originates flows to dst (source side); ok=false refuses the flow.
	// Required.
	Route func(dst netip.Addr) (node session.NodeID, ok bool)
	// AllowInput reports whether this node re-originates a flow to dst for another node (destination
	// side). Nil refuses every flow.
	AllowInput func(dst netip.Addr) bool
	// RouteBack reports whether this node's replies to src leave through the TUN, and names the device
	// they would leave through (destination side). A source without a route back through the TUN is
	// refused: its SYN-ACK would leak elsewhere. Nil skips the check (tests with a fake TUN).
	RouteBack func(src netip.Addr) (dev string, ok bool)
	// Owns reports whether address src belongs to node (destination side): a flow is re-originated
	// only from an address the node that opened it owns, so no member can open a flow as another.
	// Nil skips the check (tests).
	Owns func(node session.NodeID, src netip.Addr) bool
	// KCP tunes the conversations; MaxFlows caps them (zero: defaults).
	KCP      KCPConfig
	MaxFlows int
	// Log receives the proxy's diagnostics; nil discards them.
	Log *slog.Logger
}

// Flow is one proxied flow as `weft proxy` lists it.
type Flow struct {
	ID    FlowID
	Side  string // "source" or "destination"
	Peer  session.NodeID
	Start time.Time
	state atomic.Value // string
	// Up and Down count payload bytes client->server and server->client.
	Up, Down atomic.Uint64
}

// State is "established", "half-closed" or "closing".
func (f *Flow) State() string { return f.state.Load().(string) }

// Counters are the Proxy's flow counters since it started.
type Counters struct {
	Opened, Refused, Reset uint64
	Transport              Stats
}

// Proxy is the node's transparent TCP proxy.
type Proxy struct {
	o     Options
	log   *slog.Logger
	stack *Stack
	tr    *Transport
	bufs  sync.Pool

	opened, refused, reset atomic.Uint64
	wg                     sync.WaitGroup // flows in motion
}

// New starts the netstack and the transport.
func New(o Options) (*Proxy, error) {
	switch {
	case o.WriteTUN == nil:
		return nil, errors.New("proxy: Options.WriteTUN is nil: pass the TUN writer")
	case o.Route == nil:
		return nil, errors.New("proxy: Options.Route is nil: pass the mesh lookup")
	}
	p := &Proxy{o: o, log: o.Log}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.bufs.New = func() any { b := make([]byte, copyBuf); return &b }
	var err error
	p.stack, err = NewStack(StackOptions{
		MTU: o.MTU, Output: o.WriteTUN, OutputOffset: o.TUNOffset, Forward: p.forward, Log: p.log,
	})
	if err != nil {
		return nil, err
	}
	p.tr, err = NewTransport(TransportOptions{
		Self: o.Self, Send: o.SendSegments, Headroom: o.SegmentHeadroom, Tailroom: o.SegmentTailroom,
		MaxSegment: o.MaxSegment, Accept: p.accept, KCP: o.KCP, MaxFlows: o.MaxFlows, Log: p.log,
	})
	if err != nil {
		p.stack.Close()
		return nil, err
	}
	return p, nil
}

// Close resets every flow and stops the transport and the netstack.
func (p *Proxy) Close() {
	p.tr.Close()
	p.stack.Close()
	p.wg.Wait()
}

// Outbound takes a TCP packet read from the TUN if it belongs to the proxy and reports whether it did:
// a packet of a flow the netstack owns, or a SYN without ACK for which proxyable(dst) holds.
func (p *Proxy) Outbound(ip []byte, proxyable func(dst netip.Addr) bool) bool {
	if p.stack.Owns(ip) {
		p.stack.Inject(ip)
		return true
	}
	id, syn, ok := synOf(ip)
	if !ok || !syn || !proxyable(id.Dst.Addr()) {
		return false
	}
	p.stack.Claim(id)
	p.stack.Inject(ip)
	return true
}

// synOf parses an IPv4 TCP packet's 4-tuple and whether it is a SYN without ACK.
func synOf(ip []byte) (FlowID, bool, bool) {
	if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 6 {
		return FlowID{}, false, false
	}
	ihl := int(ip[0]&0x0f) * 4
	if ihl < 20 || len(ip) < ihl+14 {
		return FlowID{}, false, false
	}
	flags := ip[ihl+13]
	src := netip.AddrFrom4([4]byte(ip[12:16]))
	dst := netip.AddrFrom4([4]byte(ip[16:20]))
	sport := uint16(ip[ihl])<<8 | uint16(ip[ihl+1])
	dport := uint16(ip[ihl+2])<<8 | uint16(ip[ihl+3])
	id := FlowID{Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, dport)}
	return id, flags&0x02 != 0 && flags&0x10 == 0, true
}

// Deliver hands the proxy a segment node src sent it; FlushInput after a batch.
func (p *Proxy) Deliver(src session.NodeID, seg []byte) { p.tr.Deliver(src, seg) }

// FlushInput sends the ACKs the delivered segments owe (call after each received batch).
func (p *Proxy) FlushInput() { p.tr.FlushInput() }

// ClosePeer resets the flows with a node that is no longer reachable.
func (p *Proxy) ClosePeer(id session.NodeID) { p.tr.ClosePeer(id) }

// Flows lists the flows in flight, oldest first.
func (p *Proxy) Flows() []*Flow { return p.stack.flows.records() }

// Counters returns the proxy's counters.
func (p *Proxy) Counters() Counters {
	return Counters{Opened: p.opened.Load(), Refused: p.refused.Load(), Reset: p.reset.Load(), Transport: p.tr.Stats()}
}

// Netstack returns netstack's counters (cheap: no walk over the flows, unlike Counters).
func (p *Proxy) Netstack() NetstackCounters { return p.stack.Counters() }

// forward handles a new flow on the source node: ask the destination node, then complete or refuse
// the client's handshake.
func (p *Proxy) forward(r *Request) {
	id := r.ID()
	node, ok := p.o.Route(id.Dst.Addr())
	if !ok {
		p.refused.Add(1)
		r.Reject()
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), openWait)
	st, err := p.tr.Open(ctx, node, OpenRequest{Src: id.Src, Dst: id.Dst})
	cancel()
	if err != nil {
		p.refused.Add(1)
		p.log.Debug("proxied flow refused", "flow", id.String(), "err", err)
		r.Reject()
		return
	}
	conn, err := r.Accept()
	if err != nil {
		st.Reset()
		return
	}
	p.startFlow(id, "source", node, conn, st, true)
}

// accept handles a conversation a source node opened: checks, then the spoofed dial.
func (p *Proxy) accept(src session.NodeID, req OpenRequest, st *Stream) {
	id := FlowID{Src: req.Src, Dst: req.Dst}
	if p.o.AllowInput == nil || !p.o.AllowInput(req.Dst.Addr()) {
		p.refused.Add(1)
		st.Refuse(RefusedPolicy)
		return
	}
	if p.o.Owns != nil && !p.o.Owns(src, req.Src.Addr()) {
		p.refused.Add(1)
		p.log.Warn("proxied flow refused: its source address does not belong to the node that opened it", "flow", id.String(), "node", src)
		st.Refuse(RefusedPolicy)
		return
	}
	if p.o.RouteBack != nil {
		if dev, ok := p.o.RouteBack(req.Src.Addr()); !ok {
			p.refused.Add(1)
			p.log.Warn("proxied flow refused: no route back through the tunnel", "flow", id.String(), "route_dev", dev)
			st.Refuse(RefusedPolicy)
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	conn, err := p.stack.Dial(ctx, id)
	cancel()
	if err != nil {
		p.refused.Add(1)
		reason := RefusedUnreachable
		if errors.Is(err, syscall.ECONNREFUSED) {
			reason = RefusedConn
		}
		p.log.Debug("proxied flow refused: dial failed", "flow", id.String(), "err", err)
		st.Refuse(reason)
		return
	}
	if err := st.Accept(); err != nil {
		conn.Abort()
		st.Reset()
		return
	}
	p.startFlow(id, "destination", src, conn, st, false)
}
