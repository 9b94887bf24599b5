package dataplane

// The packet path of one node.
//
// Outbound (Run, one goroutine): the kernel routes a packet for a remote virtual IP or exposed subnet
// into the TUN. Run reads a batch of packets (the TUN splits a TSO super-packet into up to 128
// segments), each into its own buffer at TUNReadOffset, so that every header a relayed packet needs fits
// in front of it and two tags behind it. For each packet (Outbound): its source must be one of this
// node's addresses (else src_not_owned) -> the proxy may take it -> route lookup on the destination
// (mesh.Table, an immutable snapshot) -> owner node -> Sealer.SealTo (the direct peer's session, or the
// e2e session inside an envelope for the next hop) -> Batch. Consecutive packets for the same link leave
// in one SendBatch (sendmmsg). No copy and no allocation per packet.
//
// Inbound (Receive, on the underlay reader goroutines, a recvmmsg batch at a time): Demux (the node:
// receiver index -> keypair -> Open in place -> inner message) hands every IP packet to Deliver, which
// lets it in only when its destination is this node's and its source belongs to the node whose session
// authenticated it; the accepted packets of the whole read are written to the TUN in one batch from the
// datagrams' own buffers (the TUN coalesces TCP segments, GRO). Then AfterReceive runs (the proxy flushes
// the ACKs the batch's KCP segments owe).

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/tun"
	"github.com/weft-vpn/weft/internal/underlay"
)

// Counters are byte and packet totals of the traffic with one node, updated without locks.
type Counters struct {
	RxBytes, TxBytes, RxPackets, TxPackets atomic.Uint64
}

// Local is what this node owns: its virtual IP and the subnets it exposes.
type Local struct {
	IP      netip.Addr
	Subnets []netip.Prefix
}

// Owns reports whether a is this node's virtual IP or in a subnet it exposes.
func (l Local) Owns(a netip.Addr) bool {
	if a == l.IP {
		return true
	}
	for _, s := range l.Subnets {
		if s.Contains(a) {
			return true
		}
	}
	return false
}

// Sealer seals inner messages for nodes (the node's sessions).
type Sealer interface {
	// SealTo seals the inner message buf[MsgOffset:MsgOffset+msgLen] for node dst and returns the
	// packet and the link to send it on. buf has Tailroom behind the message. When the message waits
	// for a session it returns queued true and no packet; when there is no way to dst, neither (and it
	// counts the drop).
	SealTo(tab *mesh.Table, dst session.NodeID, buf []byte, msgLen int) (pkt []byte, link underlay.Link, queued bool)
}

// Config wires a Plane to its node. Every field but Proxy and AfterReceive is required.
type Config struct {
	// Dev is the TUN device.
	Dev tun.Device
	// Local is what this node owns.
	Local Local
	// Table returns the current routing table.
	Table func() *mesh.Table
	// Sealer seals outbound messages.
	Sealer Sealer
	// Proxy is offered every outbound IPv4 packet before it is routed; it reports whether it took it.
	Proxy func(ip []byte) bool
	// Demux handles one datagram read from the underlay and returns the buffer to write to the TUN
	// (the IP packet at TUNWriteOffset) when it carried one that Deliver accepted, else nil.
	Demux func(pkt []byte, from underlay.Link) []byte
	// AfterReceive runs after the TUN write of each batch Receive got.
	AfterReceive func()
	// Traffic returns the counters of node id.
	Traffic func(id session.NodeID) *Counters
	// Drop counts a dropped packet by reason.
	Drop func(reason string)
	// Spoofed is told about a packet dropped because its source is not its sender's.
	Spoofed func(origin session.NodeID, src netip.Addr, why string)
}

// Plane is one node's packet path.
type Plane struct {
	cfg     Config
	batches sync.Pool // *[][]byte: the TUN writes of one Receive
}

// New checks cfg and returns its Plane.
func New(cfg Config) (*Plane, error) {
	switch {
	case cfg.Dev == nil:
		return nil, errors.New("dataplane: Config.Dev is nil: pass the TUN device")
	case !cfg.Local.IP.Is4():
		return nil, errors.New("dataplane: Config.Local.IP is not an IPv4 address: pass the node's virtual IP")
	case cfg.Table == nil || cfg.Sealer == nil || cfg.Demux == nil || cfg.Traffic == nil || cfg.Drop == nil || cfg.Spoofed == nil:
		return nil, errors.New("dataplane: Config.Table, Sealer, Demux, Traffic, Drop and Spoofed are required")
	}
	p := &Plane{cfg: cfg}
	p.batches.New = func() any { b := make([][]byte, 0, 128); return &b }
	return p, nil
}

// Run moves packets from the TUN to the underlay until the TUN is closed or ctx ends (then it returns
// nil); any other read error ends it with that error.
func (p *Plane) Run(ctx context.Context) error {
	batch := p.cfg.Dev.BatchSize()
	bufs := make([][]byte, batch)
	sizes := make([]int, batch)
	for i := range bufs {
		bufs[i] = make([]byte, TUNReadOffset+65535+Tailroom)
	}
	var out Batch
	for {
		k, err := p.cfg.Dev.Read(bufs, sizes, TUNReadOffset)
		tab := p.cfg.Table()
		for i := 0; i < k; i++ {
			p.Outbound(tab, bufs[i][:cap(bufs[i])], sizes[i], &out)
		}
		if out.Flush() != nil {
			p.cfg.Drop("send")
		}
		if err != nil {
			if isClosed(err) || ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, tun.ErrTooManySegments) {
				p.cfg.Drop("tun_read")
				continue
			}
			return err
		}
	}
}

func isClosed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed)
}

// Outbound routes one packet read from the TUN; buf holds it at buf[TUNReadOffset:TUNReadOffset+size]
// with Tailroom behind it. The sealed packet joins out.
func (p *Plane) Outbound(tab *mesh.Table, buf []byte, size int, out *Batch) {
	src, dst, length, ok := IPv4Addrs(buf[TUNReadOffset : TUNReadOffset+size])
	if !ok {
		p.cfg.Drop("not_ipv4")
		return
	}
	if !p.cfg.Local.Owns(src) {
		// This node speaks only for its own addresses: its virtual IP and the subnets it exposes.
		p.cfg.Drop("src_not_owned")
		return
	}
	if p.cfg.Proxy != nil && p.cfg.Proxy(buf[TUNReadOffset:TUNReadOffset+length]) {
		return
	}
	r, ok := tab.Lookup(dst)
	if !ok {
		p.cfg.Drop("no_route")
		return
	}
	buf[MsgOffset] = MsgIP
	buf[MsgOffset+1] = DefaultTTL
	pkt, link, _ := p.cfg.Sealer.SealTo(tab, r.Node, buf, InnerHeaderLen+length)
	if pkt == nil {
		return
	}
	if out.Add(link, pkt) != nil {
		p.cfg.Drop("send")
	}
	c := p.cfg.Traffic(r.Node)
	c.TxBytes.Add(uint64(length))
	c.TxPackets.Add(1)
}

// Receive is the underlay's handler: it demultiplexes every datagram of one read, writes the IP
// packets Deliver accepted to the TUN in one batch, then runs AfterReceive.
func (p *Plane) Receive(pkts []underlay.Packet) {
	bp := p.batches.Get().(*[][]byte)
	batch := (*bp)[:0]
	for _, pk := range pkts {
		if out := p.cfg.Demux(pk.Data, pk.From); out != nil {
			batch = append(batch, out)
		}
	}
	if len(batch) > 0 {
		if _, err := p.cfg.Dev.Write(batch, TUNWriteOffset); err != nil && !isClosed(err) {
			p.cfg.Drop("tun_write")
		}
	}
	if p.cfg.AfterReceive != nil {
		p.cfg.AfterReceive()
	}
	clear(batch)
	*bp = batch[:0]
	p.batches.Put(bp)
}

// Deliver decides whether an IP packet that origin sent this node (over their direct session, or their
// e2e session) goes into the TUN: its destination must be this node's and its source an address origin
// owns. Nothing is relayed at this level (relays forward sealed envelopes). It returns the packet's
// length.
func (p *Plane) Deliver(origin session.NodeID, ip []byte) (int, bool) {
	src, dst, length, ok := IPv4Addrs(ip)
	if !ok {
		p.cfg.Drop("malformed")
		return 0, false
	}
	if !p.cfg.Local.Owns(dst) {
		p.cfg.Drop("not_local")
		return 0, false
	}
	owner, why := p.CheckSource(p.cfg.Table(), src)
	if why == "" && owner != origin {
		why = "src_not_sender"
	}
	if why != "" {
		p.cfg.Drop(why)
		p.cfg.Spoofed(origin, src, why)
		return 0, false
	}
	c := p.cfg.Traffic(owner)
	c.RxBytes.Add(uint64(length))
	c.RxPackets.Add(1)
	return length, true
}

// CheckSource returns the node owning src by the routing table, or the drop reason: one of this node's
// own addresses as source (src_spoofed), or an address no node owns (src_unknown). The caller compares
// the owner with the authenticated origin of the packet.
func (p *Plane) CheckSource(tab *mesh.Table, src netip.Addr) (owner session.NodeID, why string) {
	if p.cfg.Local.Owns(src) {
		return 0, "src_spoofed" // our own address, from someone else
	}
	r, ok := tab.Lookup(src)
	if !ok {
		return 0, "src_unknown"
	}
	return r.Node, ""
}

// IPv4Addrs returns the source and destination of an IPv4 packet and its length from its header (which
// may be shorter than the slice).
func IPv4Addrs(ip []byte) (src, dst netip.Addr, length int, ok bool) {
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return src, dst, 0, false
	}
	length = int(ip[2])<<8 | int(ip[3])
	if length < 20 || length > len(ip) {
		return src, dst, 0, false
	}
	return netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])), length, true
}

// Batch collects sealed packets for one link so that they leave in one SendBatch.
type Batch struct {
	link underlay.Link
	pkts [][]byte
}

// Add appends pkt for link l; a batch for another link is sent first (its error returned).
func (b *Batch) Add(l underlay.Link, pkt []byte) error {
	var err error
	if b.link != l {
		err = b.Flush()
		b.link = l
	}
	b.pkts = append(b.pkts, pkt)
	return err
}

// Flush sends what the batch holds.
func (b *Batch) Flush() error {
	var err error
	if len(b.pkts) > 0 {
		err = b.link.SendBatch(b.pkts)
	}
	clear(b.pkts)
	b.pkts = b.pkts[:0]
	b.link = nil
	return err
}
