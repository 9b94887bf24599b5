package underlay

// UDP path: one reader goroutine per socket reads datagrams and hands each to the Handler together with a
// udpLink for its source address. Sends go straight to the socket (sendto); the kernel serialises them.

import (
	"errors"
	"net"
	"net/netip"
	"sync"
)

type udpSocket struct {
	t     *Transport
	conn  *net.UDPConn
	ipv4  bool
	mu    sync.Mutex
	links map[netip.AddrPort]*udpLink
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
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	local := c.LocalAddr().(*net.UDPAddr)
	s := &udpSocket{
		t:     t,
		conn:  c,
		ipv4:  network == "udp4" || local.IP.To4() != nil,
		links: make(map[netip.AddrPort]*udpLink),
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
		l = &udpLink{sock: s, addr: addr}
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
	buf := make([]byte, MaxPacket)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.t.log.Debug("udp read", "err", err)
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		s.t.handler(buf[:n], s.link(from))
	}
}

type udpLink struct {
	sock *udpSocket
	addr netip.AddrPort
}

func (l *udpLink) Send(pkt []byte) error {
	_, err := l.sock.conn.WriteToUDPAddrPort(pkt, l.addr)
	return err
}
func (l *udpLink) Network() string            { return "udp" }
func (l *udpLink) RemoteAddr() netip.AddrPort { return l.addr }
func (l *udpLink) Done() <-chan struct{}      { return nil } // never ready: a UDP path does not close
func (l *udpLink) Close() error               { return nil }
func (l *udpLink) String() string             { return "udp://" + l.addr.String() }
