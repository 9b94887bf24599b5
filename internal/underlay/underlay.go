// Package underlay carries weft's encrypted packets between machines over UDP and TCP behind one
// interface.
//
// Packet flow: a Transport owns the sockets. Every packet that arrives on any of them (a UDP datagram, or
// one length-prefixed frame of a TCP stream) is handed, with the Link it came from, to the Handler given
// at construction, on the socket's own reader goroutine. To answer, or to send first, the node calls
// Link.Send. A UDP Link is a (socket, remote address) pair and never dies; a TCP Link is one connection
// and reports its death on Done().
//
// UDP reads and writes are batched (recvmmsg/sendmmsg); a TCP reader hands over every frame already
// buffered in one call.
//
// Over TCP each packet is framed with a 2-byte big-endian length; packets larger than MaxPacket are refused.
package underlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/weft-vpn/weft/internal/config"
)

// MaxPacket is the largest packet the underlay carries (and the largest TCP frame it accepts).
const MaxPacket = 65535

// Packet is one received packet and the link it came on.
type Packet struct {
	// Data is the packet. It has spare capacity (up to MaxPacket; at least 64 bytes on a TCP link without
	// a session yet), so the receiver may rewrite it in place (decrypt, re-seal for a relay hop) and hand
	// it on, until the Handler returns.
	Data []byte
	From Link
}

// Link is one path to a remote node: a UDP remote address reached from one of our sockets, or one TCP
// connection.
type Link interface {
	// Send transmits one packet. It is safe for concurrent use. The packet may be reused by the caller
	// as soon as Send returns.
	Send(pkt []byte) error
	// SendBatch transmits several packets at once (sendmmsg for UDP, one write for TCP).
	SendBatch(pkts [][]byte) error
	// Network is "udp" or "tcp".
	Network() string
	// RemoteAddr is the underlay address of the other end.
	RemoteAddr() netip.AddrPort
	// Done is closed when the link can carry no more packets (a TCP connection that closed). A UDP
	// link's Done is never closed.
	Done() <-chan struct{}
	// Close ends the link (closes a TCP connection; a no-op for UDP).
	Close() error
}

// Handler receives the packets of one read (one or more), each with the link it came on. They are only
// valid during the call. Handlers are called concurrently from several reader goroutines (one per socket
// or connection).
type Handler func(pkts []Packet)

// Transport owns the underlay sockets of one node.
type Transport struct {
	handler Handler
	log     *slog.Logger

	mu        sync.Mutex
	udp       []*udpSocket // listening UDP sockets; the first one of a family also sends to dialled peers
	ephemeral map[string]*udpSocket
	tcpLn     []net.Listener
	conns     map[*tcpLink]struct{}
	// TCP connections without a session yet (tcp.go), and their number per source address.
	untrusted         map[*tcpLink]struct{}
	untrustedPerIP    map[netip.Addr]int
	counter           func(reason string)
	handshakeDeadline time.Duration // HandshakeDeadline; shorter in tests
	closed            bool
	wg                sync.WaitGroup
	ctx               context.Context
	cancel            context.CancelFunc
}

// New returns a Transport that hands every received packet to h.
func New(h Handler, log *slog.Logger) *Transport {
	ctx, cancel := context.WithCancel(context.Background())
	return &Transport{
		handler:           h,
		log:               log,
		ephemeral:         make(map[string]*udpSocket),
		conns:             make(map[*tcpLink]struct{}),
		untrusted:         make(map[*tcpLink]struct{}),
		untrustedPerIP:    make(map[netip.Addr]int),
		handshakeDeadline: HandshakeDeadline,
		ctx:               ctx,
		cancel:            cancel,
	}
}

// SetCounter sets the function told about every limit the transport enforces ("tcp_conn_limit",
// "tcp_handshake_timeout", "tcp_frame_before_session"). Call it before Listen.
func (t *Transport) SetCounter(f func(reason string)) { t.counter = f }

func (t *Transport) count(reason string) {
	if t.counter != nil {
		t.counter(reason)
	}
}

// Listen binds a listener for uri (udp://host:port or tcp://host:port) and starts reading from it. It
// returns the URI actually bound (with the real port when port 0 was asked for).
func (t *Transport) Listen(uri config.URI) (config.URI, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return config.URI{}, net.ErrClosed
	}
	switch uri.Scheme {
	case "udp":
		s, err := listenUDP(t, networkFor("udp", uri.Host), uri.HostPort())
		if err != nil {
			return config.URI{}, fmt.Errorf("listen %s: %w", uri, err)
		}
		t.udp = append(t.udp, s)
		bound := uri
		bound.Port = uint16(s.conn.LocalAddr().(*net.UDPAddr).Port)
		return bound, nil
	case "tcp":
		ln, err := net.Listen(networkFor("tcp", uri.Host), uri.HostPort())
		if err != nil {
			return config.URI{}, fmt.Errorf("listen %s: %w", uri, err)
		}
		t.tcpLn = append(t.tcpLn, ln)
		t.wg.Add(1)
		go t.acceptLoop(ln)
		bound := uri
		bound.Port = uint16(ln.Addr().(*net.TCPAddr).Port)
		return bound, nil
	default:
		return config.URI{}, fmt.Errorf("listen %s: unknown scheme %q (want udp or tcp)", uri, uri.Scheme)
	}
}

// networkFor picks a single-family network for literal addresses, so a socket bound to 0.0.0.0 is IPv4
// only and one bound to [::] is IPv6 only.
func networkFor(scheme, host string) string {
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Is4() {
			return scheme + "4"
		}
		return scheme + "6"
	}
	return scheme
}

// Dial returns a link to addr over network ("udp" or "tcp"). A UDP link sends from a listening UDP
// socket of the same address family when there is one (so the peer sees our listening port), else from
// an ephemeral socket. A TCP link is a new connection whose packets are handed to the Handler like any
// other.
func (t *Transport) Dial(ctx context.Context, network string, addr netip.AddrPort) (Link, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	switch network {
	case "udp":
		s, err := t.udpSocketFor(addr.Addr())
		if err != nil {
			return nil, err
		}
		return s.link(addr), nil
	case "tcp":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr.String())
		if err != nil {
			return nil, fmt.Errorf("dial tcp %s: %w", addr, err)
		}
		l, err := t.adoptTCP(c.(*net.TCPConn))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("dial tcp %s: %w", addr, err)
		}
		return l, nil
	default:
		return nil, fmt.Errorf("dial %s: unknown network %q", addr, network)
	}
}

func (t *Transport) udpSocketFor(a netip.Addr) (*udpSocket, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, net.ErrClosed
	}
	for _, s := range t.udp {
		if s.canReach(a) {
			return s, nil
		}
	}
	fam := "udp4"
	if !a.Is4() {
		fam = "udp6"
	}
	if s := t.ephemeral[fam]; s != nil {
		return s, nil
	}
	s, err := listenUDP(t, fam, ":0")
	if err != nil {
		return nil, fmt.Errorf("open %s socket for outbound peers: %w", fam, err)
	}
	t.ephemeral[fam] = s
	return s, nil
}

// Close stops every listener and connection and waits for the reader goroutines to end.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.cancel()
	var errs []error
	for _, s := range t.udp {
		errs = append(errs, s.conn.Close())
	}
	for _, s := range t.ephemeral {
		errs = append(errs, s.conn.Close())
	}
	for _, ln := range t.tcpLn {
		errs = append(errs, ln.Close())
	}
	for c := range t.conns {
		errs = append(errs, c.Close())
	}
	t.mu.Unlock()
	t.wg.Wait()
	return ignoreClosed(errors.Join(errs...))
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
