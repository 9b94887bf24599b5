package proxy

// Transport carries proxied TCP flows between weft nodes: one smux stream per
// flow, on one KCP session per ordered pair of nodes (see kcp.go), with the
// framing of frame.go on each stream.
//
//	source node:      Open(dst, req) -> smux OpenStream -> frameOpen -> wait for frameVerdict
//	                  -> *Stream (Read/Write/CloseWrite/Reset/Close)
//	destination node: first segment of a new KCP session -> link (smux server)
//	                  -> acceptLoop -> serveStream reads frameOpen
//	                  -> Options.Accept(src, req, st) -> st.Accept() / st.Refuse(r)

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/xtaci/smux"

	"github.com/weft-vpn/weft/internal/session"
)

// Errors returned by Open and Stream (test with errors.Is).
var (
	// ErrRefused: the destination node refused the flow (the destination
	// answered RST, or policy); the source answers the client with a RST.
	ErrRefused = errors.New("flow refused by destination node")
	// ErrUnreachable: the destination node could not reach the original
	// destination (dial timeout, no route).
	ErrUnreachable = errors.New("original destination unreachable from destination node")
	// ErrReset: the peer reset the flow, or the session carrying it ended
	// before the peer's FIN.
	ErrReset = errors.New("flow reset by peer")
	// ErrMalformed: a frame on a stream broke the framing; the stream is reset.
	ErrMalformed = errors.New("malformed proxy frame")
)

const (
	// openTimeout bounds how long a destination waits for the open request
	// of a new stream.
	openTimeout = 10 * time.Second
	// resetWriteTimeout bounds the write of a RST frame.
	resetWriteTimeout = time.Second
)

// Options configure a Transport.
type Options struct {
	// Self is this node's ID.
	Self session.NodeID
	// Send transmits one segment to node dst, without blocking; it may drop
	// it like UDP. It is called from KCP goroutines and must not keep seg
	// after it returns. Required.
	Send func(dst session.NodeID, seg []byte) error
	// MaxSegment is the largest segment Send carries (TUN MTU minus the
	// node's headers, ~1380). Required, at least 256; kcp-go sends at most
	// 1472-byte packets, so segments stay at most 1473 bytes.
	MaxSegment int
	// Accept is called on its own goroutine when a remote node opens a flow.
	// It dials the original destination and then calls st.Accept() or
	// st.Refuse(reason); it owns st. Close waits for it to return. Nil
	// refuses every flow with RefusedPolicy.
	Accept func(src session.NodeID, req OpenRequest, st *Stream)
	// KCP tunes KCP and smux; the zero value means defaults.
	KCP KCPConfig
	// Log receives warnings about peers; nil discards them.
	Log *slog.Logger
}

// Stats are a Transport's counters since it started.
type Stats struct {
	PayloadSent     int64 // flow bytes written to streams
	PayloadReceived int64 // flow bytes read from streams
	SegmentsSent    int64 // KCP packets handed to Send
	SegmentsRecv    int64 // KCP packets delivered to a session
	Retransmits     int64 // KCP data segments sent again
	SendErrors      int64 // segments Send returned an error for
	Malformed       int64 // segments dropped as unparsable
}

// Transport runs the KCP and smux sessions of one node with its peers.
type Transport struct {
	o     Options
	cfg   KCPConfig
	mtu   int
	log   *slog.Logger
	stats counters

	mu     sync.Mutex
	peers  map[session.NodeID]*peerLinks
	closed bool

	wg sync.WaitGroup // acceptLoop, serveStream and watchAfterFIN goroutines
}

// peerLinks are the two KCP sessions with one peer.
type peerLinks struct {
	out *link // we dialed it; our flows to the peer
	in  *link // the peer dialed it; its flows to us
}

// NewTransport checks o and returns a Transport. KCP sessions start on the
// first Open or Deliver.
func NewTransport(o Options) (*Transport, error) {
	if o.Send == nil {
		return nil, errors.New("proxy transport: Options.Send is nil: pass the node's segment sender")
	}
	if o.MaxSegment < minSegment {
		return nil, fmt.Errorf("proxy transport: Options.MaxSegment %d is below %d bytes: pass the TUN MTU minus the node's headers", o.MaxSegment, minSegment)
	}
	if err := o.KCP.validate(); err != nil {
		return nil, fmt.Errorf("proxy transport: %w", err)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Transport{
		o:     o,
		cfg:   o.KCP.withDefaults(),
		mtu:   min(o.MaxSegment-segPrefixLen, kcpMaxPacket),
		log:   log.With("component", "proxy"),
		peers: make(map[session.NodeID]*peerLinks),
	}, nil
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	s := &t.stats
	return Stats{
		PayloadSent: s.payloadSent.Load(), PayloadReceived: s.payloadReceived.Load(),
		SegmentsSent: s.segmentsSent.Load(), SegmentsRecv: s.segmentsRecv.Load(),
		Retransmits: s.retransmits.Load(), SendErrors: s.sendErrors.Load(), Malformed: s.malformed.Load(),
	}
}

// Deliver hands the transport a segment that arrived from node src. seg may
// be reused after Deliver returns. KCP input runs on the caller's goroutine.
func (t *Transport) Deliver(src session.NodeID, seg []byte) {
	if len(seg) < segPrefixLen {
		t.stats.malformed.Add(1)
		return
	}
	body := seg[segPrefixLen:]
	switch seg[0] {
	case segToDialer:
		h, ok := peekKCP(body)
		if !ok {
			t.stats.malformed.Add(1)
			return
		}
		t.mu.Lock()
		var l *link
		if p := t.peers[src]; p != nil && p.out != nil && p.out.conv == h.conv {
			l = p.out
		}
		closed := t.closed
		t.mu.Unlock()
		if l != nil {
			l.conn.push(body)
		} else if !closed {
			t.sendControl(src, resetSegment(segToListener, h.conv))
		}
	case segToListener:
		t.deliverToListener(src, body)
	case segReset:
		if len(body) != 5 || (body[0] != segToListener && body[0] != segToDialer) {
			t.stats.malformed.Add(1)
			return
		}
		t.dropLink(src, body[0] == segToDialer, binary.BigEndian.Uint32(body[1:]))
	default:
		t.stats.malformed.Add(1)
	}
}

// deliverToListener feeds a segment of a session src dialed, starting our end
// of it when it is new. A new session is recognized by its first segment
// being data within the first window that acknowledges nothing of ours;
// anything else for an unknown session is answered with a reset, so the
// peer's stale session (we dropped ours) fails fast instead of hanging.
func (t *Transport) deliverToListener(src session.NodeID, body []byte) {
	h, ok := peekKCP(body)
	if !ok {
		t.stats.malformed.Add(1)
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	p := t.peers[src]
	if p != nil && p.in != nil && p.in.conv == h.conv {
		l := p.in
		t.mu.Unlock()
		l.conn.push(body)
		return
	}
	if h.cmd != kcpCmdPush || h.una != 0 || h.sn >= uint32(t.cfg.Window) {
		t.mu.Unlock()
		t.sendControl(src, resetSegment(segToDialer, h.conv))
		return
	}
	l, err := newLink(t.o.Self, src, false, h.conv, t.mtu, t.cfg, t.o.Send, &t.stats)
	if err != nil {
		t.mu.Unlock()
		t.log.Warn("cannot accept KCP session", "peer", src, "err", err)
		return
	}
	if p == nil {
		p = &peerLinks{}
		t.peers[src] = p
	}
	old := p.in
	p.in = l
	t.wg.Add(1)
	t.mu.Unlock()
	if old != nil {
		t.log.Info("peer replaced its KCP session", "peer", src, "old_conv", old.conv, "conv", l.conv)
		old.close()
	}
	go t.acceptLoop(l)
	l.conn.push(body)
}

// dropLink closes our session with src that segments of kind segToDialer
// (dialed) or segToListener (!dialed) reach, if its conversation is conv.
func (t *Transport) dropLink(src session.NodeID, dialed bool, conv uint32) {
	t.mu.Lock()
	var l *link
	if p := t.peers[src]; p != nil {
		if dialed && p.out != nil && p.out.conv == conv {
			l, p.out = p.out, nil
		} else if !dialed && p.in != nil && p.in.conv == conv {
			l, p.in = p.in, nil
		}
		if p.out == nil && p.in == nil {
			delete(t.peers, src)
		}
	}
	t.mu.Unlock()
	if l != nil {
		t.log.Info("peer reset KCP session", "peer", src, "conv", l.conv)
		l.close()
	}
}

func (t *Transport) sendControl(dst session.NodeID, seg []byte) {
	t.stats.segmentsSent.Add(1)
	if err := t.o.Send(dst, seg); err != nil {
		t.stats.sendErrors.Add(1)
	}
}

// outLink returns our dialed session with dst, starting it if needed.
func (t *Transport) outLink(dst session.NodeID) (*link, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, fmt.Errorf("proxy transport: %w", net.ErrClosed)
	}
	p := t.peers[dst]
	if p == nil {
		p = &peerLinks{}
		t.peers[dst] = p
	}
	if p.out != nil && !p.out.mux.IsClosed() {
		l := p.out
		t.mu.Unlock()
		return l, nil
	}
	l, err := newLink(t.o.Self, dst, true, rand.Uint32(), t.mtu, t.cfg, t.o.Send, &t.stats)
	if err != nil {
		t.mu.Unlock()
		return nil, err
	}
	old := p.out
	p.out = l
	t.mu.Unlock()
	if old != nil {
		old.close()
	}
	return l, nil
}

// Open asks node dst to re-originate the flow req and returns once dst's
// verdict arrived: a Stream ready for data when accepted; an error matching
// ErrRefused or ErrUnreachable when refused; ctx.Err() when ctx ends first.
func (t *Transport) Open(ctx context.Context, dst session.NodeID, req OpenRequest) (*Stream, error) {
	payload, err := openPayload(req)
	if err != nil {
		return nil, err
	}
	l, err := t.outLink(dst)
	if err != nil {
		return nil, err
	}
	ms, err := l.mux.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("open flow %v via node %s: %w: %w", req, dst, ErrReset, err)
	}
	st := newStream(t, ms, dst, req)
	if _, err := ms.Write(appendFrame(nil, frameOpen, payload)); err != nil {
		ms.Close()
		return nil, fmt.Errorf("open flow %v via node %s: send request: %w: %w", req, dst, ErrReset, err)
	}
	stop := context.AfterFunc(ctx, func() { ms.SetReadDeadline(time.Unix(1, 0)) })
	reason, err := st.readVerdict()
	if !stop() {
		ms.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		ms.Close()
		return nil, fmt.Errorf("open flow %v via node %s: %w", req, dst, err)
	}
	if reason != verdictOK {
		ms.Close()
		return nil, fmt.Errorf("open flow %v via node %s: %w", req, dst, reason.err())
	}
	return st, nil
}

// acceptLoop accepts the streams a peer opens on an incoming session.
func (t *Transport) acceptLoop(l *link) {
	defer t.wg.Done()
	for {
		ms, err := l.mux.AcceptStream()
		if err != nil {
			return
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			ms.Close()
			return
		}
		t.wg.Add(1)
		t.mu.Unlock()
		go t.serveStream(l.peer, ms)
	}
}

// serveStream reads a new stream's open request and hands it to Options.Accept.
func (t *Transport) serveStream(src session.NodeID, ms *smux.Stream) {
	defer t.wg.Done()
	ms.SetReadDeadline(time.Now().Add(openTimeout))
	st := newStream(t, ms, src, OpenRequest{})
	typ, p, err := readFrame(st.br, make([]byte, frameHeaderLen+2*maxAddrLen))
	if err == nil && typ != frameOpen {
		err = fmt.Errorf("%w: %v frame before open request", ErrMalformed, typ)
	}
	if err == nil {
		st.req, err = parseOpen(p)
	}
	if err != nil {
		t.log.Warn("bad flow open request", "peer", src, "err", err)
		st.Reset()
		return
	}
	ms.SetReadDeadline(time.Time{})
	if t.o.Accept == nil {
		st.Refuse(RefusedPolicy)
		return
	}
	t.o.Accept(src, st.req, st)
}

// ClosePeer resets every flow with node and drops its KCP sessions, telling
// the node so (best effort). The node calls it when the peer is lost.
func (t *Transport) ClosePeer(node session.NodeID) {
	t.mu.Lock()
	p := t.peers[node]
	delete(t.peers, node)
	t.mu.Unlock()
	if p == nil {
		return
	}
	if p.out != nil { // the peer's end is its in-link, which our segToListener segments reach
		t.sendControl(node, resetSegment(segToListener, p.out.conv))
		p.out.close()
	}
	if p.in != nil { // the peer's end is its out-link, which our segToDialer segments reach
		t.sendControl(node, resetSegment(segToDialer, p.in.conv))
		p.in.close()
	}
}

// Close resets every flow, ends all sessions and waits for the transport's
// goroutines, including running Accept callbacks.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	peers := t.peers
	t.peers = nil
	t.mu.Unlock()
	for _, p := range peers {
		for _, l := range []*link{p.out, p.in} {
			if l != nil {
				l.close()
			}
		}
	}
	t.wg.Wait()
	return nil
}

// Stream is one proxied flow. Read returns io.EOF after the peer's FIN and
// ErrReset after its RST; CloseWrite sends FIN; Reset sends RST; Close
// releases it (quietly after FIN both ways, else as Reset). Read and Write may
// be called concurrently with each other and with the other methods.
type Stream struct {
	t    *Transport
	ms   *smux.Stream
	peer session.NodeID
	req  OpenRequest

	rmu    sync.Mutex // one reader at a time; guards br, hdr, remain
	br     *bufio.Reader
	hdr    [frameHeaderLen]byte
	remain int // payload bytes left in the current data frame

	wmu  sync.Mutex // keeps frames whole
	wbuf []byte

	mu        sync.Mutex // guards the state below
	rerr      error      // sticky Read error
	finSent   bool
	finRecv   bool
	verdict   bool // Accept or Refuse called
	reset     bool // RST sent or received, or session gone
	closed    bool
	nRead     int64
	nWritten  int64
	watchOnce sync.Once
}

func newStream(t *Transport, ms *smux.Stream, peer session.NodeID, req OpenRequest) *Stream {
	return &Stream{t: t, ms: ms, peer: peer, req: req, br: bufio.NewReaderSize(ms, 32<<10)}
}

// Request returns the flow's original 4-tuple.
func (s *Stream) Request() OpenRequest { return s.req }

// Peer returns the node at the other end of the flow.
func (s *Stream) Peer() session.NodeID { return s.peer }

// Bytes returns the payload bytes read from and written to the stream.
func (s *Stream) Bytes() (read, written int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nRead, s.nWritten
}

// Accept tells the source node the flow is accepted; data may flow.
func (s *Stream) Accept() error { return s.sendVerdict(verdictOK) }

// Refuse tells the source node the flow is refused (its Open returns an
// error for r) and releases the stream.
func (s *Stream) Refuse(r Refusal) error {
	if r == verdictOK {
		return fmt.Errorf("refuse flow %v: refusal reason 0 is not a refusal", s.req)
	}
	err := s.sendVerdict(r)
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.ms.Close()
	return err
}

func (s *Stream) sendVerdict(v Refusal) error {
	s.mu.Lock()
	if s.verdict {
		s.mu.Unlock()
		return fmt.Errorf("flow %v: verdict already sent", s.req)
	}
	s.verdict = true
	s.mu.Unlock()
	return s.writeFrame(frameVerdict, []byte{byte(v)})
}

// readVerdict reads the destination's verdict (source side).
func (s *Stream) readVerdict() (Refusal, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	var buf [1]byte
	typ, p, err := readFrame(s.br, buf[:])
	switch {
	case err != nil && errors.Is(err, ErrMalformed):
		return 0, err
	case err != nil:
		return 0, fmt.Errorf("%w: no verdict: %w", ErrReset, err)
	case typ == frameRST:
		return 0, fmt.Errorf("%w before verdict", ErrReset)
	case typ != frameVerdict:
		return 0, fmt.Errorf("%w: %v frame instead of verdict", ErrMalformed, typ)
	}
	return parseVerdict(p)
}

// Read reads flow payload. It returns io.EOF after the peer's FIN, an error
// matching ErrReset after the peer's RST or the loss of its session.
func (s *Stream) Read(p []byte) (int, error) {
	if err := s.readErr(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for s.remain == 0 {
		if err := s.readErr(); err != nil {
			return 0, err
		}
		typ, n, err := readHeader(s.br, &s.hdr)
		if err != nil {
			return 0, s.failRead(err)
		}
		switch typ {
		case frameData:
			s.remain = n
		case frameFIN:
			s.setReadErr(io.EOF, func() { s.finRecv = true })
			s.startWatch()
			return 0, io.EOF
		case frameRST:
			return 0, s.peerReset(fmt.Errorf("flow %v: %w", s.req, ErrReset))
		default:
			return 0, s.failRead(fmt.Errorf("%w: unexpected %v frame", ErrMalformed, typ))
		}
	}
	n, err := s.br.Read(p[:min(len(p), s.remain)])
	s.remain -= n
	s.mu.Lock()
	s.nRead += int64(n)
	s.mu.Unlock()
	s.t.stats.payloadReceived.Add(int64(n))
	if err != nil {
		return n, s.failRead(err)
	}
	return n, nil
}

func (s *Stream) readErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rerr
}

// setReadErr sets the sticky read error (the first one wins) and runs f
// under s.mu.
func (s *Stream) setReadErr(err error, f func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rerr == nil {
		s.rerr = err
	}
	if f != nil {
		f()
	}
	return s.rerr
}

// failRead turns an error under the framing into the Read error: a malformed
// frame resets the stream; the end of the smux stream or session before a FIN
// is a reset; after a local Close or Reset, net.ErrClosed.
func (s *Stream) failRead(err error) error {
	if errors.Is(err, ErrMalformed) {
		s.Reset()
		return s.setReadErr(fmt.Errorf("flow %v: %w (stream reset)", s.req, err), nil)
	}
	s.mu.Lock()
	local := s.closed || s.reset
	s.mu.Unlock()
	if local {
		return s.setReadErr(fmt.Errorf("flow %v: %w", s.req, net.ErrClosed), nil)
	}
	return s.peerReset(fmt.Errorf("flow %v: %w: stream ended without FIN: %w", s.req, ErrReset, err))
}

// peerReset records that the peer is gone and releases the smux stream.
func (s *Stream) peerReset(err error) error {
	err = s.setReadErr(err, func() { s.reset = true })
	s.ms.Close()
	return err
}

// startWatch keeps reading after the peer's FIN, so that a later RST (or the
// loss of the session) makes Write fail instead of writing into the void.
func (s *Stream) startWatch() {
	s.watchOnce.Do(func() {
		s.t.mu.Lock()
		if s.t.closed {
			s.t.mu.Unlock()
			return
		}
		s.t.wg.Add(1)
		s.t.mu.Unlock()
		go func() {
			defer s.t.wg.Done()
			s.rmu.Lock()
			defer s.rmu.Unlock()
			_, _, err := readHeader(s.br, &s.hdr)
			s.mu.Lock()
			quiet := s.closed || (err == io.EOF && !s.reset)
			s.mu.Unlock()
			if !quiet {
				s.mu.Lock()
				s.reset = true
				s.mu.Unlock()
				s.ms.Close()
			}
		}()
	})
}

// Write sends p as data frames. After the peer's RST or the loss of its
// session it returns an error matching ErrReset.
func (s *Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n := 0
	for len(p) > 0 {
		if err := s.writeErrLocked("write"); err != nil {
			return n, err
		}
		c := p[:min(len(p), maxDataPayload)]
		s.wbuf = appendFrame(s.wbuf[:0], frameData, c)
		if _, err := s.ms.Write(s.wbuf); err != nil {
			return n, s.failWrite(err)
		}
		n += len(c)
		p = p[len(c):]
		s.mu.Lock()
		s.nWritten += int64(len(c))
		s.mu.Unlock()
		s.t.stats.payloadSent.Add(int64(len(c)))
	}
	return n, nil
}

// writeErrLocked says why nothing may be written now (caller holds wmu).
func (s *Stream) writeErrLocked(op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return fmt.Errorf("%s flow %v: %w", op, s.req, net.ErrClosed)
	case s.reset:
		return fmt.Errorf("%s flow %v: %w", op, s.req, ErrReset)
	case s.finSent:
		return fmt.Errorf("%s flow %v: write side already closed (FIN sent)", op, s.req)
	}
	return nil
}

func (s *Stream) failWrite(err error) error {
	s.mu.Lock()
	local := s.closed
	if !local {
		s.reset = true
	}
	s.mu.Unlock()
	if local {
		return fmt.Errorf("write flow %v: %w", s.req, net.ErrClosed)
	}
	return fmt.Errorf("write flow %v: %w: %w", s.req, ErrReset, err)
}

func (s *Stream) writeFrame(t frameType, payload []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writeErrLocked(t.String()); err != nil {
		return err
	}
	if _, err := s.ms.Write(appendFrame(nil, t, payload)); err != nil {
		return s.failWrite(err)
	}
	return nil
}

// CloseWrite sends FIN: the peer's Read returns io.EOF once it has read
// everything before it; the peer may keep writing.
func (s *Stream) CloseWrite() error {
	if err := s.writeFrame(frameFIN, nil); err != nil {
		return err
	}
	s.mu.Lock()
	s.finSent = true
	s.mu.Unlock()
	return nil
}

// Reset aborts the flow: it sends RST (unless a blocked Write holds the
// stream, in which case the peer sees the stream end without FIN, which it
// also reads as a reset) and releases the stream.
func (s *Stream) Reset() error {
	s.mu.Lock()
	if s.reset || s.closed {
		s.mu.Unlock()
		s.ms.Close()
		return nil
	}
	s.reset = true
	s.mu.Unlock()
	if s.wmu.TryLock() {
		s.ms.SetWriteDeadline(time.Now().Add(resetWriteTimeout))
		s.ms.Write(appendFrame(nil, frameRST, nil))
		s.wmu.Unlock()
	}
	s.ms.Close()
	return nil
}

// Close releases the stream: quietly after FIN both ways, else it resets
// the flow first.
func (s *Stream) Close() error {
	s.mu.Lock()
	graceful := s.finSent && s.finRecv
	s.mu.Unlock()
	if !graceful {
		s.Reset()
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.ms.Close()
	return nil
}
