package underlay

// UDP path: one reader goroutine per socket reads up to udpBatch datagrams per recvmmsg and hands them,
// each with the udpLink of its source address, to the Handler in one call. Sends go straight to the
// socket: sendto for one packet, sendmmsg for a batch; the kernel serialises concurrent senders.
// Within a batch, each run of equal-sized packets (the last may be shorter) leaves as one message with
// UDP segmentation offload (UDP_SEGMENT, see gso.go): the kernel cuts it into the same datagrams after
// one trip through the socket layer. Where the kernel or device refuses it, the socket falls back to
// one message per packet for good.

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// udpBatch is how many datagrams one read or write syscall moves at most.
const udpBatch = 64

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

type udpSocket struct {
	t     *Transport
	conn  *net.UDPConn
	batch batchConn
	ipv4  bool
	mu    sync.Mutex
	links map[netip.AddrPort]*udpLink
	msgs  sync.Pool   // *[]ipv4.Message for SendBatch
	noGSO atomic.Bool // the kernel refused UDP_SEGMENT once: one message per packet from then on
}

func listenUDP(t *Transport, network, addr string) (*udpSocket, error) {
	ua, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP(network, ua)
	if err != nil {
		return nil, err
	}
	// Large socket buffers: a burst of tunnel traffic must not overflow the default 208 KiB.
	setSocketBuffers(c, udpSocketBuffer)
	local := c.LocalAddr().(*net.UDPAddr)
	s := &udpSocket{
		t:     t,
		conn:  c,
		ipv4:  network == "udp4" || local.IP.To4() != nil,
		links: make(map[netip.AddrPort]*udpLink),
	}
	if s.ipv4 {
		s.batch = ipv4.NewPacketConn(c)
	} else {
		s.batch = ipv6.NewPacketConn(c)
	}
	s.msgs.New = func() any {
		ms := make([]ipv4.Message, udpBatch)
		for i := range ms {
			ms[i].OOB = make([]byte, 0, gsoCmsgSpace)
		}
		return &ms
	}
	t.wg.Add(1)
	go s.readLoop()
	return s, nil
}

// canReach reports whether this socket can send to a (same address family).
func (s *udpSocket) canReach(a netip.Addr) bool { return s.ipv4 == a.Is4() }

func (s *udpSocket) link(addr netip.AddrPort) *udpLink {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.links[addr]
	if l == nil {
		l = &udpLink{sock: s, addr: addr, ua: net.UDPAddrFromAddrPort(addr)}
		// A stale map is harmless but unbounded growth is not: forget old links past a size.
		if len(s.links) > 4096 {
			clear(s.links)
		}
		s.links[addr] = l
	}
	return l
}

func (s *udpSocket) readLoop() {
	defer s.t.wg.Done()
	msgs := make([]ipv4.Message, udpBatch)
	bufs := make([][]byte, udpBatch)
	for i := range msgs {
		bufs[i] = make([]byte, MaxPacket)
		msgs[i].Buffers = [][]byte{bufs[i]}
	}
	pkts := make([]Packet, udpBatch)
	for {
		n, err := s.batch.ReadBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.t.log.Debug("udp read", "err", err)
			continue
		}
		k := 0
		for i := 0; i < n; i++ {
			ua, ok := msgs[i].Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			ap := ua.AddrPort()
			pkts[k] = Packet{Data: bufs[i][:msgs[i].N], From: s.link(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))}
			k++
		}
		if k > 0 {
			s.t.handler(pkts[:k])
		}
		clear(pkts[:k])
	}
}

type udpLink struct {
	sock *udpSocket
	addr netip.AddrPort
	ua   *net.UDPAddr
}

func (l *udpLink) Send(pkt []byte) error {
	_, err := l.sock.conn.WriteToUDPAddrPort(pkt, l.addr)
	return err
}

func (l *udpLink) SendBatch(pkts [][]byte) error {
	if len(pkts) == 1 {
		return l.Send(pkts[0])
	}
	mp := l.sock.msgs.Get().(*[]ipv4.Message)
	defer l.sock.msgs.Put(mp)
	ms := *mp
	defer func() {
		for i := range ms {
			ms[i].Buffers, ms[i].Addr, ms[i].OOB = nil, nil, ms[i].OOB[:0]
		}
	}()
	gsoTooBig := false // the kernel refused a segment size for this path: no segmentation in this call
	for len(pkts) > 0 {
		gso := !l.sock.noGSO.Load() && !gsoTooBig
		k, used := 0, 0 // messages filled, packets they hold
		for k < len(ms) && used < len(pkts) {
			n := 1
			if gso {
				n = gsoRun(pkts[used:])
			}
			ms[k].Buffers, ms[k].Addr, ms[k].OOB = pkts[used:used+n], l.ua, ms[k].OOB[:0]
			if n > 1 {
				ms[k].OOB = appendGSOSize(ms[k].OOB, len(pkts[used]))
			}
			k++
			used += n
		}
		sent := 0
		for sent < k {
			n, err := l.sock.batch.WriteBatch(ms[sent:k], 0)
			if n > 0 { // on an error n is -1 (sendmmsg's result)
				sent += n
			}
			if err == nil {
				continue
			}
			if sent < k && len(ms[sent].OOB) > 0 && (gsoRefused(err) || errors.Is(err, unix.EMSGSIZE)) {
				// The kernel or the egress device cannot segment: send the rest of this batch (from the
				// refused message on) one packet per message, and for good unless the segments were
				// only too big for the path (then the kernel fragments them one by one).
				if errors.Is(err, unix.EMSGSIZE) {
					gsoTooBig = true
				} else {
					l.sock.noGSO.Store(true)
					l.sock.t.log.Debug("udp: segmentation offload refused; sending one datagram per packet", "err", err)
				}
				rest := 0
				for i := sent; i < k; i++ {
					rest += len(ms[i].Buffers)
				}
				used -= rest
				k = sent
				break
			}
			return err
		}
		pkts = pkts[used:]
	}
	return nil
}

func (l *udpLink) Network() string            { return "udp" }
func (l *udpLink) RemoteAddr() netip.AddrPort { return l.addr }
func (l *udpLink) Done() <-chan struct{}      { return nil } // never ready: a UDP path does not close
func (l *udpLink) Close() error               { return nil }
func (l *udpLink) String() string             { return "udp://" + l.addr.String() }
