// Package arq is a selective-repeat ARQ for one conversation that speaks KCP's wire format, so it
// interoperates with kcp-go's core, but is driven the way weft needs: nothing leaves until the caller
// calls Flush (so a write leaves at once, not at the next tick), Deadline says when the next timer is
// due and says "none" for an idle conversation (a shared scheduler can run thousands of them at no cost),
// and the receive window closes when the reader stops reading (end-to-end flow control per flow).
//
// Packet flow through a Conv (the caller holds its lock; a Conv has no goroutine and no timer):
//
//	Send(p) -> send queue (MSS-sized segments, stream mode) -> Flush: into flight within
//	           min(SendWindow, peer's window) -> PUSH segments packed into MTU-sized packets -> out(pkt)
//	Input(pkt) -> ACK: segment done, RTT sample; una: everything below it done; PUSH: stored by sequence
//	           number within the receive window, an ACK queued -> in order: receive queue -> Recv(p)
//	Flush also sends the queued ACKs, window probes (WASK) while the peer's window is zero, window
//	tells (WINS) when asked or when Recv reopened a window that had closed, and retransmissions (RTO,
//	or fast resend after FastResend later segments were acknowledged).
//
// Wire format (little-endian), one packet = one or more segments:
//
//	conv u32 | cmd u8 | frg u8 | wnd u16 | ts u32 | sn u32 | una u32 | len u32 | data[len]
//
// frg is always 0 (stream mode). wnd is the sender's free receive window in segments; una is its next
// expected sequence number (a cumulative ACK).
package arq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// HeaderLen is the size of a segment header.
const HeaderLen = 24

// Segment commands.
const (
	CmdPush = 81 // data
	CmdAck  = 82 // acknowledges sn; ts echoes the data segment's ts
	CmdWask = 83 // window probe: tell me your window
	CmdWins = 84 // window tell
)

const (
	defaultMTU      = 1400
	defaultWindow   = 1024
	defaultInterval = 10
	defaultResend   = 2
	defaultMinRTO   = 30
	defaultMaxRTO   = 10000
	defaultDeadLink = 20
	initialRTO      = 200
	probeInit       = 100
	probeMax        = 5000
	poolDataCap     = 1500
)

// Config of one conversation. Zero fields take the defaults in parentheses.
type Config struct {
	MTU        int    // largest packet handed to out, header included (1400); the MSS is MTU-24
	SendWindow int    // segments in flight at most (1024)
	RecvWindow int    // segments buffered for the reader at most, in order and out of order each (1024)
	Interval   uint32 // ms: the longest an ACK waits for a Flush (10)
	FastResend int    // resend a segment that this many later segments' ACKs skipped (2); <0: off
	MinRTO     uint32 // ms (30)
	MaxRTO     uint32 // ms (10000)
	DeadLink   int    // a segment sent this many times without an ACK ends the conversation (20)
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MTU, defaultMTU)
	def(&c.SendWindow, defaultWindow)
	def(&c.RecvWindow, defaultWindow)
	def(&c.FastResend, defaultResend)
	def(&c.DeadLink, defaultDeadLink)
	if c.MTU < HeaderLen+26 {
		c.MTU = HeaderLen + 26
	}
	if c.Interval == 0 {
		c.Interval = defaultInterval
	}
	if c.MinRTO == 0 {
		c.MinRTO = defaultMinRTO
	}
	if c.MaxRTO == 0 {
		c.MaxRTO = defaultMaxRTO
	}
	return c
}

// ErrMalformed is wrapped by Input's errors.
var ErrMalformed = errors.New("malformed KCP packet")

// seg is one data segment.
type seg struct {
	sn, ts   uint32
	resendAt uint32
	rto      uint32
	xmit     uint32
	fastack  uint32
	acked    bool
	data     []byte
}

// segPool recycles segments (with their data buffers) across conversations: an allocation cache, not
// state.
var segPool = sync.Pool{New: func() any { return &seg{data: make([]byte, 0, poolDataCap)} }}

func newSeg(mss int) *seg {
	s := segPool.Get().(*seg)
	if cap(s.data) < mss {
		s.data = make([]byte, 0, mss)
	}
	d := s.data[:0]
	*s = seg{data: d}
	return s
}

func freeSeg(s *seg) {
	if cap(s.data) == poolDataCap {
		segPool.Put(s)
	}
}

// Pools of the queues' arrays, the ACK lists and the packing buffers: an idle conversation returns
// them, so it holds no buffer, and steady traffic does not allocate.
var (
	arrPool = sync.Pool{New: func() any { s := make([]*seg, 0, 64); return &s }}
	ackPool = sync.Pool{New: func() any { s := make([]ack, 0, 64); return &s }}
	pktPool = sync.Pool{New: func() any { b := make([]byte, 0, 1500); return &b }}
)

// fifo is a queue of segments on a pooled slice with a moving head.
type fifo struct {
	s    []*seg
	p    *[]*seg // the pooled slice header s came from
	head int
}

func (q *fifo) len() int      { return len(q.s) - q.head }
func (q *fifo) at(i int) *seg { return q.s[q.head+i] }
func (q *fifo) push(s *seg) {
	if q.p == nil {
		q.p = arrPool.Get().(*[]*seg)
		q.s = (*q.p)[:0]
	}
	q.s = append(q.s, s)
}
func (q *fifo) last() *seg     { return q.s[len(q.s)-1] }
func (q *fifo) front() *seg    { return q.s[q.head] }
func (q *fifo) popFront() *seg { s := q.s[q.head]; q.s[q.head] = nil; q.head++; q.compact(); return s }
func (q *fifo) compact() {
	switch {
	case q.head == len(q.s):
		q.release() // an empty queue keeps no array: idle conversations hold no buffers
	case q.head > 64 && q.head*2 > len(q.s):
		n := copy(q.s, q.s[q.head:])
		clear(q.s[n:])
		q.s, q.head = q.s[:n], 0
	}
}
func (q *fifo) drain() {
	for i := q.head; i < len(q.s); i++ {
		freeSeg(q.s[i])
	}
	q.release()
}

func (q *fifo) release() {
	if q.p != nil && cap(q.s) <= 8192 {
		clear(q.s[:cap(q.s)])
		*q.p = q.s[:0]
		arrPool.Put(q.p)
	}
	q.s, q.p, q.head = nil, nil, 0
}

type ack struct{ sn, ts uint32 }

// Stats are one conversation's counters.
type Stats struct {
	SegmentsSent, Retransmits, FastRetransmits, SegmentsReceived, Duplicates uint64
}

// Conv is one conversation. It is not safe for concurrent use: the caller locks.
type Conv struct {
	conv uint32
	cfg  Config
	mss  int
	out  func([]byte)
	pkt  []byte // the packet being packed during Flush

	// Sending.
	sndUna, sndNxt uint32
	queue          fifo // not yet sent
	flight         fifo // sent, sn = sndUna+i; acked ones stay until una passes them
	rmtWnd         uint32
	maxAck         uint32 // highest sn acknowledged in the current Input
	maxAckTs       uint32 // when that segment was last sent
	haveMaxAck     bool
	nextResend     uint32 // earliest resendAt in flight, as of the last Flush
	srtt, rttvar   int32
	rto            uint32

	// Receiving.
	rcvNxt   uint32
	rcvQueue fifo   // in order, for Recv
	rcvOff   int    // bytes of rcvQueue.front() already read
	ready    int    // bytes readable
	ooo      []*seg // out of order: ooo[(oooHead + sn - rcvNxt) % RecvWindow]
	oooHead  int
	oooCount int
	acks     []ack
	ackp     *[]ack // the pooled slice header acks came from
	pktp     *[]byte
	ackSince uint32

	// Window probing.
	probeAt, probeWait uint32
	askSend, askTell   bool
	toldWnd            uint32

	fastDue bool // a segment is due for fast resend

	lastNow uint32
	dead    bool
	stats   Stats
}

// New returns conversation conv. out gets every packet to send (at most MTU bytes, valid only during
// the call).
func New(conv uint32, cfg Config, out func(pkt []byte)) *Conv {
	cfg = cfg.withDefaults()
	return &Conv{conv: conv, cfg: cfg, mss: cfg.MTU - HeaderLen, out: out,
		rmtWnd: uint32(cfg.RecvWindow), rto: initialRTO, toldWnd: uint32(cfg.RecvWindow)}
}

// ID is the conversation id.
func (c *Conv) ID() uint32 { return c.conv }

// MSS is the largest payload of one segment.
func (c *Conv) MSS() int { return c.mss }

func diff(later, earlier uint32) int32 { return int32(later - earlier) }

// Input processes one received packet at time now (ms). A malformed packet, or one of another
// conversation, is an error; the segments before the bad one are processed. Nothing is sent: ACKs are
// queued for Flush.
func (c *Conv) Input(pkt []byte, now uint32) error {
	c.lastNow = now
	c.haveMaxAck = false
	if len(pkt) == 0 {
		return fmt.Errorf("%w: empty packet", ErrMalformed)
	}
	var err error
	for len(pkt) > 0 {
		if len(pkt) < HeaderLen {
			err = fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(pkt))
			break
		}
		conv := binary.LittleEndian.Uint32(pkt)
		cmd, frg := pkt[4], pkt[5]
		wnd := binary.LittleEndian.Uint16(pkt[6:])
		ts := binary.LittleEndian.Uint32(pkt[8:])
		sn := binary.LittleEndian.Uint32(pkt[12:])
		una := binary.LittleEndian.Uint32(pkt[16:])
		n := binary.LittleEndian.Uint32(pkt[20:])
		switch {
		case conv != c.conv:
			err = fmt.Errorf("%w: conversation %08x, want %08x", ErrMalformed, conv, c.conv)
		case uint64(n) > uint64(len(pkt)-HeaderLen):
			err = fmt.Errorf("%w: segment of %d bytes in %d", ErrMalformed, n, len(pkt)-HeaderLen)
		case cmd < CmdPush || cmd > CmdWins:
			err = fmt.Errorf("%w: command %d", ErrMalformed, cmd)
		case cmd == CmdPush && (frg != 0 || int(n) > c.mss):
			err = fmt.Errorf("%w: data segment frg %d len %d (MSS %d)", ErrMalformed, frg, n, c.mss)
		}
		if err != nil {
			break
		}
		data := pkt[HeaderLen : HeaderLen+int(n)]
		pkt = pkt[HeaderLen+int(n):]
		c.rmtWnd = uint32(wnd)
		c.ackUna(una)
		switch cmd {
		case CmdAck:
			if d := diff(now, ts); d >= 0 {
				c.sampleRTT(d)
			}
			c.ackOne(sn)
		case CmdPush:
			c.stats.SegmentsReceived++
			c.receive(sn, ts, data)
		case CmdWask:
			c.askTell = true
		}
	}
	if c.haveMaxAck && c.cfg.FastResend > 0 {
		for i := 0; i < c.flight.len(); i++ {
			s := c.flight.at(i)
			if diff(s.sn, c.maxAck) >= 0 {
				break
			}
			// A segment resent already counts only ACKs of segments sent after it went out again:
			// those say the resent copy was lost too, so it may be resent fast again.
			if !s.acked && (s.xmit == 1 || diff(c.maxAckTs, s.ts) > 0) {
				s.fastack++
				if s.fastack >= uint32(c.cfg.FastResend) {
					c.fastDue = true
				}
			}
		}
	}
	return err
}

// ackUna drops every segment below una from flight, and the acknowledged ones at its head.
func (c *Conv) ackUna(una uint32) {
	for c.flight.len() > 0 {
		s := c.flight.front()
		if diff(una, s.sn) <= 0 && !s.acked {
			break
		}
		c.sndUna = s.sn + 1
		freeSeg(c.flight.popFront())
	}
	if c.flight.len() == 0 {
		c.sndUna = c.sndNxt
	}
}

func (c *Conv) ackOne(sn uint32) {
	i := diff(sn, c.sndUna)
	if i < 0 || int(i) >= c.flight.len() {
		return
	}
	s := c.flight.at(int(i))
	s.acked = true
	if !c.haveMaxAck || diff(sn, c.maxAck) > 0 {
		c.maxAck, c.maxAckTs, c.haveMaxAck = sn, s.ts, true
	}
	c.ackUna(c.sndUna) // drop a newly acknowledged head
}

func (c *Conv) sampleRTT(rtt int32) {
	if c.srtt == 0 {
		c.srtt, c.rttvar = max(rtt, 1), rtt/2
	} else {
		d := rtt - c.srtt
		if d < 0 {
			d = -d
		}
		c.rttvar = (3*c.rttvar + d) / 4
		c.srtt = max((7*c.srtt+rtt)/8, 1)
	}
	rto := uint32(c.srtt) + max(c.cfg.Interval, uint32(4*c.rttvar))
	c.rto = min(max(rto, c.cfg.MinRTO), c.cfg.MaxRTO)
}

// receive stores one data segment and queues its ACK.
func (c *Conv) receive(sn, ts uint32, data []byte) {
	w := c.cfg.RecvWindow
	off := diff(sn, c.rcvNxt)
	if off >= int32(w) {
		return // beyond the window: not stored, not acknowledged
	}
	if len(c.acks) == 0 {
		c.ackSince = c.lastNow
		if c.ackp == nil {
			c.ackp = ackPool.Get().(*[]ack)
			c.acks = (*c.ackp)[:0]
		}
	}
	c.acks = append(c.acks, ack{sn, ts})
	if off < 0 {
		c.stats.Duplicates++
		return
	}
	if off == 0 && c.oooCount == 0 && c.rcvQueue.len() < w {
		c.deliver(c.copySeg(data))
		c.rcvNxt++
		return
	}
	if c.ooo == nil {
		c.ooo = make([]*seg, w)
	}
	i := (c.oooHead + int(off)) % w
	if c.ooo[i] != nil {
		c.stats.Duplicates++
		return
	}
	c.ooo[i] = c.copySeg(data)
	c.oooCount++
	c.moveInOrder()
}

func (c *Conv) copySeg(data []byte) *seg {
	s := newSeg(c.mss)
	s.data = append(s.data, data...)
	return s
}

func (c *Conv) deliver(s *seg) {
	c.rcvQueue.push(s)
	c.ready += len(s.data)
}

// moveInOrder moves the out-of-order segments that are now in order to the receive queue, while it has
// room.
func (c *Conv) moveInOrder() {
	w := c.cfg.RecvWindow
	for c.oooCount > 0 && c.ooo[c.oooHead] != nil && c.rcvQueue.len() < w {
		c.deliver(c.ooo[c.oooHead])
		c.ooo[c.oooHead] = nil
		c.oooHead = (c.oooHead + 1) % w
		c.oooCount--
		c.rcvNxt++
	}
	if c.oooCount == 0 && c.ooo != nil {
		c.ooo, c.oooHead = nil, 0
	}
}

// Send queues p (copied) for sending, filling the last unsent segment first. Nothing leaves until
// Flush. It returns len(p).
func (c *Conv) Send(p []byte) int {
	n := len(p)
	if c.queue.len() > 0 {
		if s := c.queue.last(); len(s.data) < c.mss {
			k := min(len(p), c.mss-len(s.data))
			s.data = append(s.data, p[:k]...)
			p = p[k:]
		}
	}
	for len(p) > 0 {
		k := min(len(p), c.mss)
		c.queue.push(c.copySeg(p[:k]))
		p = p[k:]
	}
	return n
}

// SetSendWindow changes how many segments may be in flight (at least 1); the caller shares one link's
// budget among conversations with it.
func (c *Conv) SetSendWindow(n int) { c.cfg.SendWindow = max(n, 1) }

// Pending is the number of segments queued or in flight.
func (c *Conv) Pending() int { return c.queue.len() + c.flight.len() }

// Readable is the number of in-order bytes ready for Recv.
func (c *Conv) Readable() int { return c.ready }

// Recv copies in-order bytes into p (a segment may be read in parts) and returns how many; 0 when none
// is ready.
func (c *Conv) Recv(p []byte) int {
	n := 0
	for n < len(p) && c.rcvQueue.len() > 0 {
		s := c.rcvQueue.front()
		k := copy(p[n:], s.data[c.rcvOff:])
		n += k
		c.rcvOff += k
		if c.rcvOff == len(s.data) {
			freeSeg(c.rcvQueue.popFront())
			c.rcvOff = 0
		}
	}
	c.ready -= n
	if n > 0 {
		c.moveInOrder()
		if w := uint32(c.cfg.RecvWindow); c.toldWnd < w/2 && c.wnd() >= w/2 {
			c.askTell = true // the window had closed: reopen it now, do not wait for a probe
		}
	}
	return n
}

func (c *Conv) wnd() uint32 {
	if q := c.rcvQueue.len(); q < c.cfg.RecvWindow {
		return uint32(c.cfg.RecvWindow - q)
	}
	return 0
}

func (c *Conv) sendWindow() uint32 { return min(uint32(c.cfg.SendWindow), c.rmtWnd) }

// NeedsFlush reports whether Flush would send something now.
func (c *Conv) NeedsFlush() bool {
	return len(c.acks) > 0 || c.askTell || c.askSend || c.fastDue ||
		(c.queue.len() > 0 && c.sndNxt-c.sndUna < c.sendWindow())
}

// Dead reports whether a segment was sent DeadLink times without being acknowledged.
func (c *Conv) Dead() bool { return c.dead }

// Stats returns the conversation's counters.
func (c *Conv) Stats() Stats { return c.stats }

// header writes a segment header into the packet being packed, sending it first if the segment would
// not fit.
func (c *Conv) header(cmd byte, sn, ts uint32, n int) {
	if len(c.pkt)+HeaderLen+n > c.cfg.MTU {
		c.out(c.pkt)
		c.pkt = c.pkt[:0]
	}
	var h [HeaderLen]byte
	binary.LittleEndian.PutUint32(h[0:], c.conv)
	h[4] = cmd
	c.toldWnd = c.wnd()
	binary.LittleEndian.PutUint16(h[6:], uint16(min(c.toldWnd, 0xffff)))
	binary.LittleEndian.PutUint32(h[8:], ts)
	binary.LittleEndian.PutUint32(h[12:], sn)
	binary.LittleEndian.PutUint32(h[16:], c.rcvNxt)
	binary.LittleEndian.PutUint32(h[20:], uint32(n))
	c.pkt = append(c.pkt, h[:]...)
}

// Flush sends at time now: queued ACKs, window probes and tells, new segments within the window, and
// the retransmissions that are due.
func (c *Conv) Flush(now uint32) {
	c.lastNow = now
	c.pktp = pktPool.Get().(*[]byte)
	if cap(*c.pktp) < c.cfg.MTU {
		*c.pktp = make([]byte, 0, c.cfg.MTU)
	}
	c.pkt = (*c.pktp)[:0]
	for _, a := range c.acks {
		c.header(CmdAck, a.sn, a.ts, 0)
	}
	c.releaseAcks()
	// The whole flight is scanned only when a fast resend or a timeout may be due; otherwise only the
	// segments this Flush adds are looked at, so a Flush costs O(new segments), not O(window).
	scan := c.fastDue || c.flight.len() == 0 || diff(now, c.nextResend) >= 0
	c.fastDue = false

	if c.rmtWnd == 0 {
		switch {
		case c.probeWait == 0:
			c.probeWait = probeInit
			c.probeAt = now + probeInit
		case diff(now, c.probeAt) >= 0:
			c.askSend = true
			c.probeWait = min(c.probeWait*3/2, probeMax)
			c.probeAt = now + c.probeWait
		}
	} else {
		c.probeWait = 0
	}
	if c.askSend {
		c.header(CmdWask, 0, now, 0)
	}
	if c.askTell {
		c.header(CmdWins, 0, now, 0)
	}
	c.askSend, c.askTell = false, false

	first := 0 // where the scan starts
	if !scan {
		first = c.flight.len()
	}
	for c.queue.len() > 0 && c.sndNxt-c.sndUna < c.sendWindow() {
		s := c.queue.popFront()
		s.sn = c.sndNxt
		c.sndNxt++
		c.flight.push(s)
	}

	resend := uint32(c.cfg.FastResend)
	if c.cfg.FastResend < 0 {
		resend = 0
	}
	next, haveNext := uint32(0), false
	if !scan {
		next, haveNext = c.nextResend, true // still the earliest of the segments not scanned
	}
	for i := first; i < c.flight.len(); i++ {
		s := c.flight.at(i)
		if s.acked {
			continue
		}
		send := false
		switch {
		case s.xmit == 0:
			send, s.rto = true, c.rto
		case resend > 0 && s.fastack >= resend:
			send, s.fastack = true, 0
			c.stats.FastRetransmits++
			c.stats.Retransmits++
		case diff(now, s.resendAt) >= 0:
			send = true
			s.rto = min(s.rto+s.rto/2, c.cfg.MaxRTO)
			s.fastack = 0
			c.stats.Retransmits++
		}
		if send {
			s.xmit++
			s.ts = now
			s.resendAt = now + s.rto
			c.header(CmdPush, s.sn, now, len(s.data))
			c.pkt = append(c.pkt, s.data...)
			c.stats.SegmentsSent++
			if s.xmit >= uint32(c.cfg.DeadLink) {
				c.dead = true
			}
		}
		if !haveNext || diff(s.resendAt, next) < 0 {
			next, haveNext = s.resendAt, true
		}
	}
	c.nextResend = next
	if len(c.pkt) > 0 {
		c.out(c.pkt)
	}
	*c.pktp = c.pkt[:0]
	pktPool.Put(c.pktp)
	c.pkt, c.pktp = nil, nil
}

func (c *Conv) releaseAcks() {
	if c.ackp != nil && cap(c.acks) <= 8192 {
		*c.ackp = c.acks[:0]
		ackPool.Put(c.ackp)
	}
	c.acks, c.ackp = nil, nil
}

// Deadline returns when Flush must next be called for a timer (a retransmission, the ACK delay, a
// window probe), or ok=false when none is pending: an idle conversation needs no scheduling.
func (c *Conv) Deadline() (at uint32, ok bool) {
	if c.askTell || c.askSend || c.fastDue || (c.queue.len() > 0 && c.sndNxt-c.sndUna < c.sendWindow()) {
		return c.lastNow, true
	}
	set := func(t uint32) {
		if !ok || diff(t, at) < 0 {
			at, ok = t, true
		}
	}
	if len(c.acks) > 0 {
		set(c.ackSince + c.cfg.Interval)
	}
	if c.flight.len() > 0 {
		set(c.nextResend)
	}
	if c.rmtWnd == 0 && c.queue.len() > 0 {
		if c.probeWait == 0 {
			set(c.lastNow)
		} else {
			set(c.probeAt)
		}
	}
	return at, ok
}

// Release returns the conversation's buffers; the Conv must not be used after.
func (c *Conv) Release() {
	c.queue.drain()
	c.flight.drain()
	c.rcvQueue.drain()
	for i, s := range c.ooo {
		if s != nil {
			freeSeg(s)
			c.ooo[i] = nil
		}
	}
	c.releaseAcks()
	c.ooo = nil
	c.ready, c.oooCount = 0, 0
}
