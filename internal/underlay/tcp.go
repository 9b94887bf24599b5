package underlay

// TCP path: every connection (accepted or dialled) gets a reader goroutine that reads 2-byte length
// frames and hands each packet to the Handler with the connection's tcpLink. Sends write the length and
// the packet in one write under a per-connection mutex, so concurrent senders never interleave frames.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
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

func (t *Transport) adoptTCP(c *net.TCPConn) (*tcpLink, error) {
	_ = c.SetNoDelay(true)
	_ = c.SetKeepAlive(true)
	_ = c.SetKeepAlivePeriod(10 * time.Second)
	ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	l := &tcpLink{
		conn: c,
		addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()),
		done: make(chan struct{}),
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, net.ErrClosed
	}
	t.conns[l] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	go t.readTCP(l)
	return l, nil
}

func (t *Transport) readTCP(l *tcpLink) {
	defer t.wg.Done()
	defer func() {
		l.Close()
		t.mu.Lock()
		delete(t.conns, l)
		t.mu.Unlock()
	}()
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
	conn *net.TCPConn
	addr netip.AddrPort

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
