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
	r := bufio.NewReaderSize(l.conn, 64<<10)
	buf := make([]byte, MaxPacket)
	var hdr [2]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				t.log.Debug("tcp read", "remote", l.addr, "err", err)
			}
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if n == 0 {
			continue
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			t.log.Debug("tcp read: truncated frame", "remote", l.addr, "err", err)
			return
		}
		t.handler(buf[:n], l)
	}
}

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
