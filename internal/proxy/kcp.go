package proxy

// KCP sessions between two nodes, carried as opaque segments in the node's
// encrypted, routed peer session. Each ordered pair of nodes has its own KCP
// session: the node that opens flows dials it (smux client), the other side
// creates its end on the first segment (smux server).
//
//	out: Stream.Write -> smux -> kcp.UDPSession (KCP output) -> kcp-go post-processing
//	     worker -> pipeConn.WriteTo: prefix byte + KCP packet -> Options.Send(peer, seg)
//	in:  node -> Transport.Deliver(src, seg) -> demux on (src, prefix) -> pipeConn.push
//	     -> kcp-go packet receiver (KCP input, on Deliver's goroutine)
//	     -> smux recvLoop reads the KCP byte stream -> Stream.Read
//
// A segment is  prefix u8 | body:
//
//	segToListener  body = KCP packet of the session the sender dialed
//	segToDialer    body = KCP packet of the session the receiver dialed
//	segReset       body = which u8 (segToListener|segToDialer) | conv u32 (BE):
//	               "drop the session my segments of that kind would reach,
//	               if its conversation is conv" (sent on ClosePeer and in
//	               answer to segments of a session the sender does not have)
//
// kcp-go's pusher interface (PacketPusher) hands each packet to KCP inside
// Deliver, so no goroutine reads a pipeConn and nothing is copied or queued.
// kcp-go's process-wide state (its timer scheduler, post-processing workers,
// buffer pool and DefaultSnmp counters) is left alone: our counters are ours.

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"

	"github.com/weft-vpn/weft/internal/session"
)

const (
	segToListener byte = 1
	segToDialer   byte = 2
	segReset      byte = 3

	segPrefixLen = 1
	// kcpMaxPacket is the largest packet kcp-go sends (its maxPacketSize):
	// segments are at most this plus the prefix, whatever MaxSegment is.
	kcpMaxPacket = 1472
	// minSegment is the smallest MaxSegment we accept: a KCP header (24
	// bytes) needs room for useful payload.
	minSegment = 256

	kcpHeaderLen = 24 // conv u32, cmd u8, frg u8, wnd u16, ts u32, sn u32, una u32, len u32 (little-endian)
	kcpCmdPush   = 81
)

// KCPConfig tunes the KCP sessions and the smux sessions on top. The zero
// value means the defaults documented on each field (see withDefaults).
type KCPConfig struct {
	// Interval is KCP's flush interval; zero means 10ms. kcp-go clamps it to
	// 10ms..5s.
	Interval time.Duration
	// Window is the send and receive window in segments; zero means 1024.
	// Size it as target rate × (RTT + 2×Interval) / MaxSegment.
	Window int
	// Resend is the fast-retransmit threshold (ACKs that skip a segment);
	// zero means 2, negative turns fast retransmit off.
	Resend int
	// CongestionControl turns KCP's own congestion window on. Off by default
	// (nc=1): on lossy links it collapses throughput.
	CongestionControl bool
	// StreamBuffer is the smux per-flow receive window in bytes; zero means
	// 1 MiB.
	StreamBuffer int
	// SessionBuffer is the smux receive buffer shared by the flows of one
	// KCP session, in bytes; zero means 16 MiB.
	SessionBuffer int
}

// withDefaults returns c with every zero field set to its default. This is
// the one place defaults live.
func (c KCPConfig) withDefaults() KCPConfig {
	if c.Interval == 0 {
		c.Interval = 10 * time.Millisecond
	}
	if c.Window == 0 {
		c.Window = 1024
	}
	if c.Resend == 0 {
		c.Resend = 2
	} else if c.Resend < 0 {
		c.Resend = 0
	}
	if c.StreamBuffer == 0 {
		c.StreamBuffer = 1 << 20
	}
	if c.SessionBuffer == 0 {
		c.SessionBuffer = 16 << 20
	}
	return c
}

func (c KCPConfig) validate() error {
	switch {
	case c.Interval < 0:
		return fmt.Errorf("KCP.Interval %v is negative: use 0 for the 10ms default", c.Interval)
	case c.Window < 0 || c.Window > 65535:
		return fmt.Errorf("KCP.Window %d segments is out of range: use 1..65535 (0 = 1024)", c.Window)
	case c.StreamBuffer < 0 || c.SessionBuffer < 0:
		return fmt.Errorf("KCP.StreamBuffer %d / SessionBuffer %d: buffers cannot be negative", c.StreamBuffer, c.SessionBuffer)
	case c.withDefaults().StreamBuffer > c.withDefaults().SessionBuffer:
		return fmt.Errorf("KCP.StreamBuffer %d exceeds SessionBuffer %d: raise SessionBuffer", c.withDefaults().StreamBuffer, c.withDefaults().SessionBuffer)
	}
	return nil
}

func (c KCPConfig) smux() *smux.Config {
	s := smux.DefaultConfig()
	s.Version = 2 // per-stream flow control: one slow flow does not stall the others
	s.KeepAliveDisabled = true
	s.MaxReceiveBuffer = c.SessionBuffer
	s.MaxStreamBuffer = c.StreamBuffer
	return s
}

// nodeAddr is a node ID as a net.Addr, the address kcp-go sees.
type nodeAddr session.NodeID

func (a nodeAddr) Network() string { return "weft" }
func (a nodeAddr) String() string  { return session.NodeID(a).String() }

// counters are a Transport's statistics (see Stats).
type counters struct {
	payloadSent, payloadReceived atomic.Int64
	segmentsSent, segmentsRecv   atomic.Int64
	retransmits, sendErrors      atomic.Int64
	malformed                    atomic.Int64
}

// pipeConn is the virtual net.PacketConn under one KCP session: WriteTo calls
// Options.Send, received segments are pushed by Deliver (kcp.PacketPusher).
type pipeConn struct {
	self, peer session.NodeID
	prefix     byte // put before every KCP packet we send
	send       func(session.NodeID, []byte) error
	stats      *counters

	mu   sync.Mutex // serializes pushes; guards recv
	recv func([]byte, net.Addr, error)

	wmu    sync.Mutex // guards the fields below
	wbuf   []byte
	nextSN uint32 // one past the highest PUSH sequence number sent
	sentSN bool

	done      chan struct{}
	closeOnce sync.Once
}

var (
	_ net.PacketConn   = (*pipeConn)(nil)
	_ kcp.PacketPusher = (*pipeConn)(nil)
)

// SetPacketReceiver implements kcp.PacketPusher.
func (c *pipeConn) SetPacketReceiver(fn func([]byte, net.Addr, error)) {
	c.mu.Lock()
	c.recv = fn
	c.mu.Unlock()
}

// push hands one KCP packet to the session; b may be reused after return.
func (c *pipeConn) push(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recv != nil {
		c.stats.segmentsRecv.Add(1)
		c.recv(b, nodeAddr(c.peer), nil)
	}
}

// ReadFrom is never called by kcp-go on a PacketPusher; it blocks until Close.
func (c *pipeConn) ReadFrom([]byte) (int, net.Addr, error) {
	<-c.done
	return 0, nil, net.ErrClosed
}

// WriteTo sends one KCP packet to the peer. Send errors count as drops, as
// on UDP: KCP retransmits. Returning them would kill the session.
func (c *pipeConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	c.countRetransmits(b)
	c.wbuf = append(append(c.wbuf[:0], c.prefix), b...)
	c.stats.segmentsSent.Add(1)
	if err := c.send(c.peer, c.wbuf); err != nil {
		c.stats.sendErrors.Add(1)
	}
	return len(b), nil
}

// countRetransmits counts PUSH segments in packet b whose sequence number
// was sent before. Caller holds wmu.
func (c *pipeConn) countRetransmits(b []byte) {
	for len(b) >= kcpHeaderLen {
		n := binary.LittleEndian.Uint32(b[20:])
		if b[4] == kcpCmdPush {
			sn := binary.LittleEndian.Uint32(b[12:])
			if c.sentSN && int32(sn-c.nextSN) < 0 {
				c.stats.retransmits.Add(1)
			} else {
				c.nextSN, c.sentSN = sn+1, true
			}
		}
		if uint64(n) > uint64(len(b)-kcpHeaderLen) {
			return
		}
		b = b[kcpHeaderLen+int(n):]
	}
}

func (c *pipeConn) Close() error {
	c.closeOnce.Do(func() { close(c.done) })
	return nil
}

func (c *pipeConn) LocalAddr() net.Addr              { return nodeAddr(c.self) }
func (c *pipeConn) SetDeadline(time.Time) error      { return nil }
func (c *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *pipeConn) SetWriteDeadline(time.Time) error { return nil }

// kcpHead is the first KCP segment header of a packet.
type kcpHead struct {
	conv, sn, una uint32
	cmd           byte
}

func peekKCP(b []byte) (kcpHead, bool) {
	if len(b) < kcpHeaderLen {
		return kcpHead{}, false
	}
	return kcpHead{
		conv: binary.LittleEndian.Uint32(b),
		cmd:  b[4],
		sn:   binary.LittleEndian.Uint32(b[12:]),
		una:  binary.LittleEndian.Uint32(b[16:]),
	}, true
}

// link is one KCP session with a peer and the smux session on it.
type link struct {
	peer   session.NodeID
	dialed bool // we dialed it: we open its streams (smux client)
	conv   uint32
	conn   *pipeConn
	kcp    *kcp.UDPSession
	mux    *smux.Session
}

// newLink starts a KCP session with conversation conv to peer, tuned by cfg,
// with smux on top (client if dialed, else server).
func newLink(self, peer session.NodeID, dialed bool, conv uint32, mtu int, cfg KCPConfig,
	send func(session.NodeID, []byte) error, stats *counters) (*link, error) {
	pc := &pipeConn{self: self, peer: peer, prefix: segToDialer, send: send, stats: stats,
		wbuf: make([]byte, 0, segPrefixLen+kcpMaxPacket), done: make(chan struct{})}
	if dialed {
		pc.prefix = segToListener
	}
	ks, err := kcp.NewConn4(conv, nodeAddr(peer), nil, 0, 0, false, pc)
	if err != nil {
		return nil, fmt.Errorf("start KCP session %08x with node %s: %w", conv, peer, err)
	}
	nc := 1
	if cfg.CongestionControl {
		nc = 0
	}
	ks.SetStreamMode(true)
	ks.SetWriteDelay(false)
	ks.SetACKNoDelay(true)
	ks.SetNoDelay(1, int(cfg.Interval/time.Millisecond), cfg.Resend, nc)
	ks.SetWindowSize(cfg.Window, cfg.Window)
	if !ks.SetMtu(mtu) {
		ks.Close()
		return nil, fmt.Errorf("KCP session with node %s: MTU %d rejected by kcp-go", peer, mtu)
	}
	var mux *smux.Session
	if dialed {
		mux, err = smux.Client(ks, cfg.smux())
	} else {
		mux, err = smux.Server(ks, cfg.smux())
	}
	if err != nil {
		ks.Close()
		return nil, fmt.Errorf("start smux on KCP session with node %s: %w", peer, err)
	}
	return &link{peer: peer, dialed: dialed, conv: conv, conn: pc, kcp: ks, mux: mux}, nil
}

// close ends the smux session (every stream on it sees an error), the KCP
// session and its pipeConn.
func (l *link) close() {
	l.mux.Close() // also closes l.kcp
	l.kcp.Close()
	l.conn.Close()
}

// resetSegment builds a segReset asking the receiver to drop the session
// that its segments of kind `which` reach, if its conversation is conv.
func resetSegment(which byte, conv uint32) []byte {
	b := []byte{segReset, which, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[2:], conv)
	return b
}
