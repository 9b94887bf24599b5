package underlay

// TCP path: every connection (accepted or dialled) gets a reader goroutine that reads 2-byte length
// frames and hands each packet to the Handler with the connection's tcpLink. Sends write the length and
// the packet in one write under a per-connection mutex, so concurrent senders never interleave frames.
//
// Until the node marks a connection authenticated (Trust, once a session is established on it) it costs
// little and lives briefly: frames of at most maxUntrustedFrame bytes, read unbuffered into one small
// buffer; closed after HandshakeDeadline; at most MaxUntrustedPerIP such connections per source address
// (more are closed at once) and MaxUntrusted in all (the oldest is closed to admit a new one). The
// batch buffers (4 MiB) are allocated only after Trust.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

func (t *Transport) acceptLoop(ln net.Listener) {
	defer t.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("tcp accept", "err", err)
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if _, err := t.adoptTCP(c.(*net.TCPConn)); err != nil {
			c.Close()
		}
	}
}

const (
	// HandshakeDeadline is how long a TCP connection may stay open without a session on it.
	HandshakeDeadline = 5 * time.Second
	// MaxUntrustedPerIP and MaxUntrusted bound the TCP connections without a session yet, per source
	// address and in all.
	MaxUntrustedPerIP = 8
	MaxUntrusted      = 256
	// maxUntrustedFrame is the largest frame read before a connection is trusted: handshake messages
	// (with a certificate) are far smaller.
	maxUntrustedFrame = 4096
	// untrustedSpare is the room behind a frame read before trust (a relay may re-seal in place).
	untrustedSpare = 64
)

// Trust marks l authenticated: a session was established on it. A TCP link then gets its full buffers
// and leaves the limits on unauthenticated connections; for a UDP link it does nothing.
func Trust(l Link) {
	if tl, ok := l.(*tcpLink); ok && tl.trusted.CompareAndSwap(false, true) {
		tl.t.untrust(tl)
	}
}

// admit accounts a new connection against the limits on unauthenticated connections. It returns false
// when its source address has too many already; at the global limit it closes the oldest one.
func (t *Transport) admit(l *tcpLink) bool {
	a := l.addr.Addr()
	// The deadline exists before anyone can see l (an eviction, Trust).
	l.deadline = time.AfterFunc(t.handshakeDeadline, func() {
		if !l.trusted.Load() {
			t.count("tcp_handshake_timeout")
			t.log.Debug("tcp: no session within the handshake deadline, closing", "remote", l.addr, "deadline", t.handshakeDeadline)
			l.Close()
		}
	})
	var evict *tcpLink
	t.mu.Lock()
	if t.untrustedPerIP[a] >= MaxUntrustedPerIP {
		t.mu.Unlock()
		l.deadline.Stop()
		t.count("tcp_conn_limit")
		return false
	}
	if len(t.untrusted) >= MaxUntrusted {
		for c := range t.untrusted {
			if evict == nil || c.opened.Before(evict.opened) {
				evict = c
			}
		}
		delete(t.untrusted, evict)
		t.decPerIP(evict.addr.Addr())
	}
	t.untrusted[l] = struct{}{}
	t.untrustedPerIP[a]++
	t.mu.Unlock()
	if evict != nil {
		t.count("tcp_conn_limit")
		evict.Close()
	}
	return true
}

// untrust takes l out of the accounting of unauthenticated connections (trusted, or closed).
func (t *Transport) untrust(l *tcpLink) {
	t.mu.Lock()
	if _, ok := t.untrusted[l]; ok {
		delete(t.untrusted, l)
		t.decPerIP(l.addr.Addr())
	}
	t.mu.Unlock()
	l.deadline.Stop()
}

// decPerIP lowers a source's count of unauthenticated connections; t.mu held.
func (t *Transport) decPerIP(a netip.Addr) {
	if t.untrustedPerIP[a]--; t.untrustedPerIP[a] <= 0 {
		delete(t.untrustedPerIP, a)
	}
}

// Untrusted returns the number of TCP connections without a session yet.
func (t *Transport) Untrusted() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.untrusted)
}

func (t *Transport) adoptTCP(c *net.TCPConn) (*tcpLink, error) {
	_ = c.SetNoDelay(true)
	_ = c.SetKeepAlive(true)
	_ = c.SetKeepAlivePeriod(10 * time.Second)
	ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	l := &tcpLink{
		t:      t,
		conn:   c,
		addr:   netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()),
		done:   make(chan struct{}),
		opened: time.Now(),
	}
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return nil, net.ErrClosed
	}
	if !t.admit(l) {
		return nil, errTooManyUntrusted
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.untrust(l)
		return nil, net.ErrClosed
	}
	t.conns[l] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	go t.readTCP(l)
	return l, nil
}

var errTooManyUntrusted = errors.New("too many TCP connections without a session from this address")

// readUntrusted reads the frames of l one by one, unbuffered and into one small buffer, until l is
// trusted (it returns true) or fails or sends a frame too big for a handshake (false).
func (t *Transport) readUntrusted(l *tcpLink) bool {
	buf := make([]byte, maxUntrustedFrame+untrustedSpare)
	var hdr [2]byte
	for !l.trusted.Load() {
		if _, err := io.ReadFull(l.conn, hdr[:]); err != nil {
			return false
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if n == 0 {
			continue
		}
		if n > maxUntrustedFrame {
			t.count("tcp_frame_before_session")
			t.log.Debug("tcp: frame too big before a session, closing", "remote", l.addr, "bytes", n)
			return false
		}
		if _, err := io.ReadFull(l.conn, buf[:n]); err != nil {
			return false
		}
		t.handler([]Packet{{Data: buf[:n], From: l}})
	}
	return true
}

func (t *Transport) readTCP(l *tcpLink) {
	defer t.wg.Done()
	defer func() {
		l.Close()
		t.untrust(l)
		t.mu.Lock()
		delete(t.conns, l)
		t.mu.Unlock()
	}()
	if !t.readUntrusted(l) {
		return
	}
	r := bufio.NewReaderSize(l.conn, 256<<10)
	bufs := make([][]byte, tcpBatch)
	for i := range bufs {
		bufs[i] = make([]byte, MaxPacket)
	}
	pkts := make([]Packet, 0, tcpBatch)
	var hdr [2]byte
	for {
		// Read one frame (blocking), then every further whole frame already buffered, and hand them over
		// together.
		pkts = pkts[:0]
		for len(pkts) < tcpBatch && (len(pkts) == 0 || r.Buffered() >= 2) {
			if len(pkts) > 0 {
				peek, _ := r.Peek(2)
				if r.Buffered() < 2+int(binary.BigEndian.Uint16(peek)) {
					break
				}
			}
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					t.log.Debug("tcp read", "remote", l.addr, "err", err)
				}
				if len(pkts) > 0 {
					t.handler(pkts)
				}
				return
			}
			n := int(binary.BigEndian.Uint16(hdr[:]))
			if n == 0 {
				continue
			}
			buf := bufs[len(pkts)]
			if _, err := io.ReadFull(r, buf[:n]); err != nil {
				t.log.Debug("tcp read: truncated frame", "remote", l.addr, "err", err)
				if len(pkts) > 0 {
					t.handler(pkts)
				}
				return
			}
			pkts = append(pkts, Packet{Data: buf[:n], From: l})
		}
		if len(pkts) > 0 {
			t.handler(pkts)
		}
	}
}

// tcpBatch is how many buffered frames one handler call receives at most.
const tcpBatch = 64

type tcpLink struct {
	t    *Transport
	conn *net.TCPConn
	addr netip.AddrPort

	opened   time.Time
	trusted  atomic.Bool
	deadline *time.Timer // closes the connection if no session is established on it in time

	wmu  sync.Mutex
	wbuf []byte

	closeOnce sync.Once
	done      chan struct{}
}

func (l *tcpLink) Send(pkt []byte) error {
	if len(pkt) > MaxPacket {
		return fmt.Errorf("tcp send to %s: packet of %d bytes exceeds %d", l.addr, len(pkt), MaxPacket)
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.wbuf = binary.BigEndian.AppendUint16(l.wbuf[:0], uint16(len(pkt)))
	l.wbuf = append(l.wbuf, pkt...)
	if _, err := l.conn.Write(l.wbuf); err != nil {
		l.Close()
		return err
	}
	return nil
}

func (l *tcpLink) SendBatch(pkts [][]byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.wbuf = l.wbuf[:0]
	for _, p := range pkts {
		if len(p) > MaxPacket {
			return fmt.Errorf("tcp send to %s: packet of %d bytes exceeds %d", l.addr, len(p), MaxPacket)
		}
		l.wbuf = binary.BigEndian.AppendUint16(l.wbuf, uint16(len(p)))
		l.wbuf = append(l.wbuf, p...)
	}
	if _, err := l.conn.Write(l.wbuf); err != nil {
		l.Close()
		return err
	}
	if cap(l.wbuf) > 1<<20 {
		l.wbuf = nil // do not keep a huge buffer after a burst
	}
	return nil
}

func (l *tcpLink) Network() string            { return "tcp" }
func (l *tcpLink) RemoteAddr() netip.AddrPort { return l.addr }
func (l *tcpLink) Done() <-chan struct{}      { return l.done }
func (l *tcpLink) String() string             { return "tcp://" + l.addr.String() }

func (l *tcpLink) Close() error {
	var err error
	l.closeOnce.Do(func() {
		err = l.conn.Close()
		close(l.done)
	})
	return err
}
