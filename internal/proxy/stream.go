package proxy

// One proxied flow: its KCP conversation (conv) and the framed byte stream on it (Stream).
//
//	Write:  frame header + payload -> arq Send -> arq Flush -> emit: KCP packets into pooled buffers
//	        (the outbox) -> after the lock: Options.Send(peer, outbox) as one batch
//	input:  Deliver -> arq Input -> wake the reader; ACKs wait for FlushInput or the ACK timer
//	Read:   arq Recv (frame header, then payload) -> caller; a window that reopens is told at once;
//	        new bytes or the end of the conversation call the flow pump's notify (flow.go)
//
// All arq state and the stream's parse state are guarded by conv.mu. A writer whose window is full and
// a reader with nothing to read wait on channels outside the lock; the one wait under it is for sendMu,
// while another goroutine hands this conversation's previous packets to the underlay (which keeps them
// in order).

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/weft-vpn/weft/internal/arq"
	"github.com/weft-vpn/weft/internal/session"
)

// conv is one KCP conversation.
type conv struct {
	t    *Transport
	key  convKey
	kind byte // segment kind of what we send on it
	st   *Stream
	ps   *peerShare

	mu       sync.Mutex
	sendMu   sync.Mutex // held while an outbox is sent; taken under mu (order: mu, then sendMu)
	a        *arq.Conv
	box      *outbox // packets emitted under mu, sent after it is released
	removed  bool    // forgotten by the transport; a is released
	reset    bool    // ended by a reset (either side) or a dead peer
	released bool    // the stream is done with it (graceful close); it lingers
	sending  bool    // counted in ps.senders: it has data queued or in flight
	linger   int64   // ms at which a released conversation is forgotten; 0 = not yet set
	dirty    bool    // on the transport's FlushInput list
	closing  chan struct{}
	notify   func(reset bool) // the flow's pump kick: called when readable or ended (see Stream.setNotify)
	readCh   chan struct{}
	writeCh  chan struct{}

	// Guarded by the scheduler's lock.
	at   int64
	hidx int
}

// outbox holds emitted packets: pkts[i] is in the pooled buffer bps[i].
type outbox struct {
	pkts [][]byte
	bps  []*[]byte
}

func (t *Transport) newConv(k convKey) *conv {
	c := &conv{t: t, key: k, kind: segToOpener, hidx: -1,
		closing: make(chan struct{}), readCh: make(chan struct{}, 1), writeCh: make(chan struct{}, 1)}
	if k.mine {
		c.kind = segToAcceptor
	}
	c.a = arq.New(k.id, t.arqConfig(), c.emit)
	c.ps = t.share(k.peer)
	c.st = &Stream{c: c, t: t, peer: k.peer}
	return c
}

// emit is arq's output: one KCP packet, copied behind the node's headroom (mu held).
func (c *conv) emit(pkt []byte) {
	if c.box == nil {
		c.box = &outbox{}
	}
	bp := c.t.bufs.Get().(*[]byte)
	b := append(append((*bp)[:c.t.o.Headroom], c.kind), pkt...)
	c.box.pkts = append(c.box.pkts, b)
	c.box.bps = append(c.box.bps, bp)
}

// unlockSend releases mu and sends what was emitted under it. The packets of one conversation leave
// in the order they were emitted: sendMu is taken before mu is released, so a second goroutine's
// packets cannot overtake the first's (reordering would read as loss and trigger fast retransmits).
func (c *conv) unlockSend() {
	b := c.box
	c.box = nil
	if b == nil {
		c.mu.Unlock()
		return
	}
	c.sendMu.Lock()
	c.mu.Unlock()
	c.t.sendBufs(c.key.peer, b.pkts)
	c.sendMu.Unlock()
	for _, bp := range b.bps {
		c.t.bufs.Put(bp)
	}
}

// signal wakes a waiter on ch without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// afterIO settles the conversation after any arq call (mu held): wakes the reader and the writer,
// ends it if the peer stopped answering, and sets its timer.
func (c *conv) afterIO(now int64) {
	if c.removed {
		return
	}
	if c.a.Dead() {
		c.t.stats.reaped.Add(1)
		c.t.log.Debug("proxied flow's peer stopped answering; flow reset", "peer", c.key.peer, "conv", c.key.id)
		c.finish(true)
		c.emitReset()
		return
	}
	if has := c.a.Pending() > 0; has != c.sending {
		c.sending = has
		if has {
			c.ps.senders.Add(1)
		} else {
			c.ps.senders.Add(-1)
		}
	}
	if c.a.Readable() > 0 {
		signal(c.readCh)
		if c.notify != nil {
			c.notify(false)
		}
	}
	if c.a.Pending() < c.t.cfg.Window {
		signal(c.writeCh)
	}
	at32, ok := c.a.Deadline()
	at := int64(-1)
	if ok {
		at = now + int64(int32(at32-uint32(now)))
	}
	if c.released {
		if c.linger == 0 && c.a.Pending() == 0 {
			c.linger = now + LingerTime.Milliseconds()
		}
		if c.linger > 0 && (at < 0 || c.linger < at) {
			at = c.linger
		}
	}
	c.t.sched.set(c, at)
}

// finish forgets the conversation (mu held): wakes everything waiting on it and releases its buffers.
func (c *conv) finish(reset bool) {
	if c.removed {
		return
	}
	c.removed = true
	c.reset = c.reset || reset
	if c.sending {
		c.sending = false
		c.ps.senders.Add(-1)
	}
	c.t.retransmitted(c.a.Stats().Retransmits)
	c.a.Release()
	c.t.sched.set(c, -1)
	c.t.remove(c)
	c.closeCh()
}

func (c *conv) closeCh() {
	select {
	case <-c.closing:
	default:
		close(c.closing)
		if c.notify != nil {
			c.notify(c.reset)
		}
	}
}

// input feeds one KCP packet from the peer.
func (c *conv) input(body []byte) {
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return
	}
	now := c.t.nowMs()
	if err := c.a.Input(body, uint32(now)); err != nil {
		c.t.stats.malformed.Add(1)
	}
	c.afterIO(now)
	mark := !c.removed && !c.dirty && c.a.NeedsFlush()
	if mark {
		c.dirty = true
	}
	c.unlockSend()
	if mark {
		c.t.markDirty(c)
	}
}

// flushDirty sends what input queued (FlushInput).
func (c *conv) flushDirty() {
	c.mu.Lock()
	c.dirty = false
	c.flushLocked()
	c.unlockSend()
}

func (c *conv) flushLocked() {
	if c.removed {
		return
	}
	now := c.t.nowMs()
	c.a.SetSendWindow(c.ps.window(c.t.cfg.Window))
	c.a.Flush(uint32(now))
	c.afterIO(now)
}

// timer runs when the conversation's deadline has come (scheduler goroutine).
func (c *conv) timer() {
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return
	}
	now := c.t.nowMs()
	if c.released && c.linger > 0 && now >= c.linger {
		c.finish(false)
	} else {
		c.flushLocked()
	}
	c.unlockSend()
}

// peerReset ends the conversation on the peer's reset.
func (c *conv) peerReset() {
	c.mu.Lock()
	c.finish(true)
	c.mu.Unlock()
}

func (t *Transport) retransmitted(n uint64) { t.stats.retransmitsDone.Add(int64(n)) }

// emitReset queues a reset segment for the peer (mu held; sent with the outbox).
func (c *conv) emitReset() {
	if c.box == nil {
		c.box = &outbox{}
	}
	bp := c.t.bufs.Get().(*[]byte)
	c.box.pkts = append(c.box.pkts, appendReset((*bp)[:c.t.o.Headroom], c.key))
	c.box.bps = append(c.box.bps, bp)
}

// Stream is one proxied flow. Read returns io.EOF after the peer's FIN and ErrReset after its RST or
// the loss of the peer; CloseWrite sends FIN; Reset sends RST; Close releases it (quietly after FIN
// both ways, else as Reset). Read and Write may be called concurrently with each other and with the
// other methods; one reader and one writer at a time.
type Stream struct {
	c    *conv
	t    *Transport
	peer session.NodeID
	req  OpenRequest

	wmu sync.Mutex // keeps frames whole

	// Guarded by c.mu.
	hdr                      [frameHeaderLen]byte
	hdrN                     int
	remain                   int // payload bytes left in the current data frame
	rerr                     error
	finSent, finRecv, answer bool

	nRead, nWritten atomic.Int64
}

// Request returns the flow's original 4-tuple.
func (s *Stream) Request() OpenRequest { return s.req }

// Peer returns the node at the other end of the flow.
func (s *Stream) Peer() session.NodeID { return s.peer }

// Bytes returns the payload bytes read from and written to the stream.
func (s *Stream) Bytes() (read, written int64) { return s.nRead.Load(), s.nWritten.Load() }

// Accept tells the source node the flow is accepted; data may flow.
func (s *Stream) Accept() error { return s.sendVerdict(verdictOK) }

// Refuse tells the source node the flow is refused (its Open returns an error for r) and releases the
// stream.
func (s *Stream) Refuse(r Refusal) error {
	if r == verdictOK {
		return fmt.Errorf("refuse flow %v: refusal reason 0 is not a refusal", s.req)
	}
	err := s.sendVerdict(r)
	s.release()
	return err
}

func (s *Stream) sendVerdict(v Refusal) error {
	s.c.mu.Lock()
	if s.answer {
		s.c.mu.Unlock()
		return fmt.Errorf("flow %v: verdict already sent", s.req)
	}
	s.answer = true
	s.c.mu.Unlock()
	return s.writeFrame(frameVerdict, []byte{byte(v)})
}

// errLocked is why the stream can neither read nor write any more, or nil (c.mu held).
func (s *Stream) deadErrLocked(op string) error {
	c := s.c
	switch {
	case c.reset:
		return fmt.Errorf("%s flow %v: %w", op, s.req, ErrReset)
	case c.removed || c.released:
		return fmt.Errorf("%s flow %v: %w", op, s.req, net.ErrClosed)
	}
	return nil
}

// wait releases c.mu, waits for ch, the end of the conversation or ctx, and takes c.mu again.
func (s *Stream) wait(ctx context.Context, ch chan struct{}) error {
	c := s.c
	c.mu.Unlock()
	var err error
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	select {
	case <-ch:
	case <-c.closing:
	case <-done:
		err = ctx.Err()
	}
	c.mu.Lock()
	return err
}

// Write sends p as data frames. It waits while the flow's send window is full (the peer's reader is
// slow). After the peer's RST or the loss of the peer it returns an error matching ErrReset.
func (s *Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n := 0
	for len(p) > 0 {
		k, err := s.writeSome(p)
		n += k
		p = p[k:]
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// writeSome queues as many data frames of p as the window allows (waiting for room for the first),
// flushes them and returns the payload bytes queued.
func (s *Stream) writeSome(p []byte) (int, error) {
	c := s.c
	c.mu.Lock()
	for {
		if err := s.deadErrLocked("write"); err != nil {
			c.mu.Unlock()
			return 0, err
		}
		if s.finSent {
			c.mu.Unlock()
			return 0, fmt.Errorf("write flow %v: write side already closed (FIN sent)", s.req)
		}
		if c.a.Pending() < s.t.cfg.Window {
			break
		}
		s.wait(nil, c.writeCh)
	}
	n := 0
	var hdr [frameHeaderLen]byte
	for len(p) > n && c.a.Pending() < s.t.cfg.Window {
		k := min(len(p)-n, maxDataPayload)
		hdr[0], hdr[1], hdr[2] = byte(frameData), byte(k>>8), byte(k)
		c.a.Send(hdr[:])
		c.a.Send(p[n : n+k])
		n += k
	}
	c.flushLocked()
	c.unlockSend()
	s.nWritten.Add(int64(n))
	s.t.stats.payloadSent.Add(int64(n))
	return n, nil
}

// writeFrame writes one control frame whole.
func (s *Stream) writeFrame(typ frameType, payload []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	c := s.c
	c.mu.Lock()
	if err := s.deadErrLocked(typ.String()); err != nil {
		c.mu.Unlock()
		return err
	}
	if s.finSent {
		c.mu.Unlock()
		return fmt.Errorf("%v flow %v: write side already closed (FIN sent)", typ, s.req)
	}
	var buf [frameHeaderLen + 1 + 2*maxAddrLen]byte
	c.a.Send(appendFrame(buf[:0], typ, payload))
	if typ == frameFIN {
		s.finSent = true
	}
	c.flushLocked()
	c.unlockSend()
	return nil
}

// Read reads flow payload. It returns io.EOF after the peer's FIN, an error matching ErrReset after the
// peer's RST or the loss of the peer.
func (s *Stream) Read(p []byte) (int, error) { return s.read(p, true) }

// tryRead is Read without waiting: errWait when nothing can be read now.
func (s *Stream) tryRead(p []byte) (int, error) { return s.read(p, false) }

func (s *Stream) read(p []byte, block bool) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c := s.c
	c.mu.Lock()
	for {
		if s.rerr != nil {
			err := s.rerr
			c.unlockSend() // a reset the error queued
			return 0, err
		}
		if c.removed || c.released {
			s.rerr = s.deadErrLocked("read")
			continue
		}
		if s.remain == 0 {
			if s.readHeaderLocked() {
				continue
			}
		} else if c.a.Readable() > 0 {
			n := c.a.Recv(p[:min(len(p), s.remain)])
			s.remain -= n
			if c.a.NeedsFlush() { // the window reopened: tell the peer now
				c.flushLocked()
			}
			c.unlockSend()
			s.nRead.Add(int64(n))
			s.t.stats.payloadReceived.Add(int64(n))
			return n, nil
		}
		if !block {
			c.mu.Unlock()
			return 0, errWait
		}
		s.wait(nil, c.readCh)
	}
}

// setNotify makes the stream call fn whenever it may have become readable or ended, with reset true
// when it ended by a reset (fn must not block; it is called with the conversation's lock held); nil
// stops it.
func (s *Stream) setNotify(fn func(reset bool)) {
	s.c.mu.Lock()
	s.c.notify = fn
	s.c.mu.Unlock()
}

// readHeaderLocked reads the next frame header if it is all there and acts on it; it reports whether
// it made progress (c.mu held, conversation live).
func (s *Stream) readHeaderLocked() bool {
	c := s.c
	if !s.fillHeaderLocked() {
		return false
	}
	s.hdrN = 0
	typ, n, err := parseHeader(&s.hdr)
	switch {
	case err != nil:
		s.malformedLocked(err)
	case typ == frameData:
		s.remain = n
	case typ == frameFIN:
		s.rerr, s.finRecv = io.EOF, true
	case typ == frameRST:
		s.rerr = fmt.Errorf("flow %v: %w", s.req, ErrReset)
		c.finish(true)
	default:
		s.malformedLocked(fmt.Errorf("%w: unexpected %v frame", ErrMalformed, typ))
	}
	return true
}

// fillHeaderLocked reads what is there of the next frame header and reports whether it is complete
// (c.mu held, conversation live).
func (s *Stream) fillHeaderLocked() bool {
	for s.hdrN < frameHeaderLen && s.c.a.Readable() > 0 {
		s.hdrN += s.c.a.Recv(s.hdr[s.hdrN:])
	}
	return s.hdrN == frameHeaderLen
}

// malformedLocked resets the flow over bytes that broke the framing (c.mu held).
func (s *Stream) malformedLocked(err error) {
	s.t.log.Debug("proxied flow's framing broken; flow reset", "flow", s.req.String(), "err", err)
	s.rerr = fmt.Errorf("flow %v: %w (flow reset)", s.req, err)
	s.c.finish(true)
	s.c.emitReset()
}

// readControl reads one whole frame of type want (open request or verdict).
func (s *Stream) readControl(ctx context.Context, want frameType) ([]byte, error) {
	c := s.c
	c.mu.Lock()
	for {
		if c.removed || c.released {
			err := s.deadErrLocked("read")
			c.mu.Unlock()
			return nil, err
		}
		if s.fillHeaderLocked() {
			typ, n, err := parseHeader(&s.hdr)
			switch {
			case err == nil && typ == frameRST:
				err = fmt.Errorf("%w before %v", ErrReset, want)
			case err == nil && typ != want:
				err = fmt.Errorf("%w: %v frame instead of %v", ErrMalformed, typ, want)
			}
			if err != nil {
				c.unlockSend()
				return nil, err
			}
			if c.a.Readable() >= n {
				s.hdrN = 0
				p := make([]byte, n)
				for k := 0; k < n; {
					k += c.a.Recv(p[k:])
				}
				if c.a.NeedsFlush() {
					c.flushLocked()
				}
				c.unlockSend()
				return p, nil
			}
		}
		if err := s.wait(ctx, c.readCh); err != nil {
			c.mu.Unlock()
			return nil, err
		}
	}
}

// readVerdict reads the destination's verdict (source side).
func (s *Stream) readVerdict(ctx context.Context) (Refusal, error) {
	p, err := s.readControl(ctx, frameVerdict)
	if err != nil {
		return 0, err
	}
	return parseVerdict(p)
}

// readOpen reads the open request of a new conversation (destination side).
func (s *Stream) readOpen(ctx context.Context) (OpenRequest, error) {
	p, err := s.readControl(ctx, frameOpen)
	if err != nil {
		return OpenRequest{}, err
	}
	return parseOpen(p)
}

// CloseWrite sends FIN: the peer's Read returns io.EOF once it has read everything before it; the peer
// may keep writing.
func (s *Stream) CloseWrite() error { return s.writeFrame(frameFIN, nil) }

// Reset aborts the flow: the peer is told at once (a reset segment, outside the byte stream) and its
// Read and Write fail with ErrReset; the conversation is released.
func (s *Stream) Reset() error {
	c := s.c
	c.mu.Lock()
	if !c.removed {
		c.finish(true)
		c.emitReset()
	}
	c.unlockSend()
	return nil
}

// Close releases the stream: quietly after FIN both ways (the conversation lingers until the peer has
// everything), else it resets the flow.
func (s *Stream) Close() error {
	s.c.mu.Lock()
	graceful := s.finSent && s.finRecv
	s.c.mu.Unlock()
	if !graceful {
		return s.Reset()
	}
	s.release()
	return nil
}

// release hands the conversation back after a graceful end (or a refusal): it keeps sending until the
// peer has acknowledged everything, lingers, then is forgotten.
func (s *Stream) release() {
	c := s.c
	c.mu.Lock()
	if !c.removed && !c.released {
		c.released = true
		c.closeCh()
		c.flushLocked()
	}
	c.unlockSend()
}
