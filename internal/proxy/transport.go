package proxy

// Transport carries proxied TCP flows between weft nodes: one KCP conversation per flow (internal/arq,
// KCP's wire format), with the framing of frame.go on each conversation's byte stream. No byte stream is
// shared between flows: a flow whose reader stops, or whose segment is lost, delays no other flow.
//
//	source node:      Open(dst, req) -> new conversation (random id) -> frameOpen -> wait for frameVerdict
//	                  -> *Stream (Read/Write/CloseWrite/Reset/Close)
//	destination node: first segment (sn 0) of an unknown conversation -> new conversation + Stream
//	                  -> serveStream reads frameOpen -> Options.Accept(src, req, st) -> st.Accept()/Refuse(r)
//
//	out: Stream.Write -> arq Send + Flush (at once, under the conversation's lock) -> KCP packets copied
//	     into pooled buffers with the node's headroom -> Options.Send(dst, batch) (one sealed sendmmsg)
//	in:  node -> Deliver(src, seg) -> demux on (src, direction, conv) -> arq Input (ACKs queued) -> wake
//	     the Stream's reader; the node calls FlushInput after each received batch, which flushes the
//	     queued ACKs of every conversation that got input, as one batch per conversation
//	timers: one scheduler goroutine with one heap for all conversations (sched.go)
//
// Flow control is end to end per flow: a conversation buffers at most Window segments for its reader and
// advertises what is left; when the service behind a flow stops reading, that flow's window closes and
// its sender stops, and nothing else is affected.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-vpn/weft/internal/arq"
	"github.com/weft-vpn/weft/internal/session"
)

// Errors returned by Open and Stream (test with errors.Is).
var (
	// ErrRefused: the destination node refused the flow (the destination answered RST, or policy); the
	// source answers the client with a RST.
	ErrRefused = errors.New("flow refused by destination node")
	// ErrUnreachable: the destination node could not reach the original destination (dial timeout, no
	// route).
	ErrUnreachable = errors.New("original destination unreachable from destination node")
	// ErrReset: the peer reset the flow, or its conversation died (the peer stopped answering) before
	// the peer's FIN.
	ErrReset = errors.New("flow reset by peer")
	// ErrMalformed: bytes from the network broke the framing; the flow is reset.
	ErrMalformed = errors.New("malformed proxy frame")
	// ErrTooManyFlows: the node carries MaxFlows flows already.
	ErrTooManyFlows = errors.New("too many proxied flows")
)

// Defaults of KCPConfig, also used by the node's configuration.
const (
	DefaultInterval = 10 * time.Millisecond
	DefaultWindow   = 2048
	DefaultResend   = 2
	DefaultMaxFlows = 16384
	// DefaultMaxFlowsPerPeer is a quarter of DefaultMaxFlows: four busy peers fill a node.
	DefaultMaxFlowsPerPeer = 4096
	// LingerTime is how long a gracefully closed conversation keeps answering its peer (a lost last
	// ACK is retransmitted for) before it is forgotten.
	LingerTime = 3 * time.Second
	// OpenTimeout bounds how long a destination waits for the open request of a new conversation.
	OpenTimeout = 10 * time.Second
)

const (
	recentTTL = 30 * time.Second // a closed conversation id is answered with a reset this long
	maxRecent = 65536
	resetRate = 200 // reset replies per second at most (burst the same)
)

// KCPConfig tunes the KCP conversations. The zero value means the defaults above.
type KCPConfig struct {
	// Interval is the ACK delay and timer granularity; zero means DefaultInterval (10ms).
	Interval time.Duration
	// Window is each conversation's send and receive window in segments; zero means DefaultWindow.
	// Size it as target rate × (RTT + 2×Interval) / segment size.
	Window int
	// Resend is the fast-retransmit threshold (ACKs that skip a segment); zero means DefaultResend,
	// negative turns fast retransmit off.
	Resend int
}

// withDefaults returns c with every zero field set to its default: the one place defaults live.
func (c KCPConfig) withDefaults() KCPConfig {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Resend == 0 {
		c.Resend = DefaultResend
	}
	return c
}

func (c KCPConfig) validate() error {
	switch {
	case c.Interval < 0:
		return fmt.Errorf("KCP.Interval %v is negative: use 0 for the %v default", c.Interval, DefaultInterval)
	case c.Window < 0 || c.Window > 65535:
		return fmt.Errorf("KCP.Window %d segments is out of range: use 1..65535 (0 = %d)", c.Window, DefaultWindow)
	}
	return nil
}

// TransportOptions configure a Transport.
type TransportOptions struct {
	// Self is this node's ID.
	Self session.NodeID
	// Send transmits segments to node dst, without blocking; it may drop them like UDP. Each segment is
	// bufs[i][Headroom:], with Tailroom bytes of spare capacity behind it (seal in place). It must not
	// keep bufs after it returns. Called from many goroutines. Required.
	Send func(dst session.NodeID, bufs [][]byte, headroom int) error
	// Headroom and Tailroom are reserved around every segment given to Send.
	Headroom, Tailroom int
	// MaxSegment is the largest segment Send carries (TUN MTU minus the node's headers, ~1380).
	// Required, at least 256.
	MaxSegment int
	// Accept is called on its own goroutine when a remote node opens a flow. It dials the original
	// destination and then calls st.Accept() or st.Refuse(reason); it owns st. Close waits for it to
	// return. Nil refuses every flow with RefusedPolicy.
	Accept func(src session.NodeID, req OpenRequest, st *Stream)
	// KCP tunes the conversations; the zero value means defaults.
	KCP KCPConfig
	// MaxFlows caps the conversations of the node (both directions); zero means DefaultMaxFlows.
	MaxFlows int
	// MaxFlowsPerPeer caps the conversations with one node (both directions), so that one node cannot
	// take every place; zero means DefaultMaxFlowsPerPeer (or MaxFlows when that is lower).
	MaxFlowsPerPeer int
	// Log receives warnings about peers; nil discards them.
	Log *slog.Logger
}

// Stats are a Transport's counters since it started.
type Stats struct {
	PayloadSent     int64 // flow bytes written to streams
	PayloadReceived int64 // flow bytes read from streams
	SegmentsSent    int64 // segments handed to Send
	SegmentsRecv    int64 // segments delivered to a conversation
	Retransmits     int64 // KCP data segments sent again
	SendErrors      int64 // batches Send returned an error for
	Malformed       int64 // segments dropped as unparsable
	Unknown         int64 // segments for no conversation this node has (answered with a reset)
	Reaped          int64 // conversations removed because their peer stopped answering
	Refused         int64 // new conversations refused at MaxFlows
	Conversations   int64 // conversations now
	Scheduled       int64 // conversations with a timer pending now
}

type counters struct {
	payloadSent, payloadReceived atomic.Int64
	segmentsSent, segmentsRecv   atomic.Int64
	retransmitsDone, sendErrors  atomic.Int64
	malformed, unknown           atomic.Int64
	reaped, refused              atomic.Int64
}

// peerShare is what the conversations with one peer share: the path's in-flight budget. Each
// conversation with data to send may have budget/senders segments in flight (at least minShare), so
// many flows together put no more on the path than one flow would, and share it evenly; a flow that
// stops sending (its reader is slow, or it is done) leaves its share to the others.
type peerShare struct {
	senders atomic.Int32
}

// minShare is the smallest in-flight window a conversation gets, however many share the path.
const minShare = 2

func (p *peerShare) window(budget int) int {
	n := int(p.senders.Load())
	if n <= 1 {
		return budget
	}
	return max(budget/n, minShare)
}

// share returns the peer's share record (created on first use; t.mu held by callers that create
// conversations).
func (t *Transport) share(peer session.NodeID) *peerShare {
	p := t.shares[peer]
	if p == nil {
		p = &peerShare{}
		t.shares[peer] = p
	}
	return p
}

// Transport runs the KCP conversations of one node with its peers.
type Transport struct {
	o     TransportOptions
	cfg   KCPConfig
	mtu   int // KCP packet size
	log   *slog.Logger
	stats counters
	start time.Time
	sched *scheduler
	bufs  sync.Pool // *[]byte of Headroom+1+mtu+Tailroom
	lists sync.Pool // *[][]byte

	mu    sync.RWMutex
	convs map[convKey]*conv
	// perPeer counts the conversations in convs by peer (MaxFlowsPerPeer).
	perPeer map[session.NodeID]int
	shares  map[session.NodeID]*peerShare
	recent  map[convKey]int64 // closed conversations -> ms until which segments get a reset
	closed  bool

	dirtyMu sync.Mutex
	dirty   []*conv // conversations with ACKs to flush (FlushInput)

	resetMu     sync.Mutex
	resetTokens float64
	resetAt     int64

	stop chan struct{}
	wg   sync.WaitGroup // scheduler, serveStream goroutines
}

// NewTransport checks o and starts a Transport's scheduler.
func NewTransport(o TransportOptions) (*Transport, error) {
	if o.Send == nil {
		return nil, errors.New("proxy transport: Options.Send is nil: pass the node's segment sender")
	}
	if o.MaxSegment < minSegment {
		return nil, fmt.Errorf("proxy transport: Options.MaxSegment %d is below %d bytes: pass the TUN MTU minus the node's headers", o.MaxSegment, minSegment)
	}
	if o.Headroom < 0 || o.Tailroom < 0 || o.MaxFlows < 0 || o.MaxFlowsPerPeer < 0 {
		return nil, fmt.Errorf("proxy transport: Headroom %d, Tailroom %d, MaxFlows %d, MaxFlowsPerPeer %d: none may be negative",
			o.Headroom, o.Tailroom, o.MaxFlows, o.MaxFlowsPerPeer)
	}
	if err := o.KCP.validate(); err != nil {
		return nil, fmt.Errorf("proxy transport: %w", err)
	}
	if o.MaxFlows == 0 {
		o.MaxFlows = DefaultMaxFlows
	}
	if o.MaxFlowsPerPeer == 0 {
		o.MaxFlowsPerPeer = min(DefaultMaxFlowsPerPeer, o.MaxFlows)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Transport{
		o: o, cfg: o.KCP.withDefaults(), mtu: min(o.MaxSegment-segKindLen, kcpMaxPacket),
		log: log.With("component", "proxy"), start: time.Now(),
		convs: make(map[convKey]*conv), recent: make(map[convKey]int64), shares: make(map[session.NodeID]*peerShare),
		perPeer: make(map[session.NodeID]int), stop: make(chan struct{}), resetTokens: resetRate,
	}
	size := o.Headroom + segKindLen + t.mtu + o.Tailroom
	t.bufs.New = func() any { b := make([]byte, size); return &b }
	t.lists.New = func() any { l := make([][]byte, 0, 64); return &l }
	t.sched = newScheduler(t.nowMs, t.fire)
	t.wg.Add(1)
	go func() { defer t.wg.Done(); t.sched.run(t.stop) }()
	return t, nil
}

// nowMs is the Transport's clock: milliseconds since it started.
func (t *Transport) nowMs() int64 { return time.Since(t.start).Milliseconds() }

func (t *Transport) arqConfig() arq.Config {
	resend := t.cfg.Resend
	return arq.Config{
		MTU: t.mtu, SendWindow: t.cfg.Window, RecvWindow: t.cfg.Window,
		Interval: uint32(t.cfg.Interval / time.Millisecond), FastResend: resend,
	}
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	s := &t.stats
	st := Stats{
		PayloadSent: s.payloadSent.Load(), PayloadReceived: s.payloadReceived.Load(),
		SegmentsSent: s.segmentsSent.Load(), SegmentsRecv: s.segmentsRecv.Load(),
		Retransmits: s.retransmitsDone.Load(), SendErrors: s.sendErrors.Load(),
		Malformed: s.malformed.Load(), Unknown: s.unknown.Load(), Reaped: s.reaped.Load(),
		Refused: s.refused.Load(), Scheduled: int64(t.sched.len()),
	}
	t.mu.Lock()
	cs := make([]*conv, 0, len(t.convs))
	for _, c := range t.convs {
		cs = append(cs, c)
	}
	t.mu.Unlock()
	st.Conversations = int64(len(cs))
	for _, c := range cs {
		c.mu.Lock()
		if !c.removed {
			st.Retransmits += int64(c.a.Stats().Retransmits)
		}
		c.mu.Unlock()
	}
	return st
}

// Deliver hands the transport a segment that arrived from node src. seg may be reused after Deliver
// returns. Call FlushInput after a batch of Deliver calls.
func (t *Transport) Deliver(src session.NodeID, seg []byte) {
	sg, err := parseSegment(seg)
	if err != nil {
		t.stats.malformed.Add(1)
		return
	}
	k := convKey{peer: src, id: sg.conv, mine: sg.mine}
	t.mu.RLock()
	closed, c := t.closed, t.convs[k]
	t.mu.RUnlock()
	if closed {
		return
	}
	if sg.kind == segReset {
		if c != nil {
			t.log.Debug("peer reset a proxied flow's conversation", "peer", src, "conv", k.id)
			c.peerReset()
		}
		return
	}
	if c == nil {
		c = t.newIncoming(k, sg.body)
		if c == nil {
			return
		}
	}
	t.stats.segmentsRecv.Add(1)
	c.input(sg.body)
}

// newIncoming starts the conversation a peer opened with this segment, or answers with a reset when
// the segment cannot start one (not the first data, a conversation closed recently, MaxFlows).
func (t *Transport) newIncoming(k convKey, body []byte) *conv {
	if k.mine || !opensConversation(body) {
		t.stats.unknown.Add(1)
		if wantsAnswer(body) {
			t.replyReset(k)
		}
		return nil
	}
	now := t.nowMs()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	if c := t.convs[k]; c != nil { // raced with another reader
		t.mu.Unlock()
		return c
	}
	if until, ok := t.recent[k]; ok && until > now {
		t.mu.Unlock()
		t.stats.unknown.Add(1)
		t.replyReset(k)
		return nil
	}
	if len(t.convs) >= t.o.MaxFlows || t.perPeer[k.peer] >= t.o.MaxFlowsPerPeer {
		t.mu.Unlock()
		t.stats.refused.Add(1)
		t.replyReset(k)
		return nil
	}
	c := t.newConv(k)
	t.addConv(c)
	t.wg.Add(1)
	t.mu.Unlock()
	go t.serveStream(c)
	return c
}

// opensConversation reports whether a KCP packet can be the first of a conversation: data with
// sequence number 0 that acknowledges nothing.
func opensConversation(b []byte) bool {
	return len(b) >= minKCPBytes && b[4] == arq.CmdPush &&
		le32(b[12:]) == 0 && le32(b[16:]) == 0
}

// wantsAnswer reports whether a KCP packet carries data or a window probe: its sender waits for an
// answer, so a conversation we do not have must be reset. ACKs and window tells of a conversation we
// forgot are dropped quietly: the peer may still be reading what we sent before we forgot it.
func wantsAnswer(b []byte) bool {
	for len(b) >= minKCPBytes {
		if b[4] == arq.CmdPush || b[4] == arq.CmdWask {
			return true
		}
		n := le32(b[20:])
		if uint64(n) > uint64(len(b)-minKCPBytes) {
			return false
		}
		b = b[minKCPBytes+int(n):]
	}
	return false
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// replyReset answers a segment of an unknown conversation with a reset, rate-limited.
func (t *Transport) replyReset(k convKey) {
	t.resetMu.Lock()
	now := t.nowMs()
	t.resetTokens = min(resetRate, t.resetTokens+float64(now-t.resetAt)*resetRate/1000)
	t.resetAt = now
	ok := t.resetTokens >= 1
	if ok {
		t.resetTokens--
	}
	t.resetMu.Unlock()
	if ok {
		t.log.Debug("segment for an unknown conversation answered with a reset", "peer", k.peer, "conv", k.id, "mine", k.mine)
		t.sendReset(k)
	}
}

// sendReset tells k's peer to drop the conversation.
func (t *Transport) sendReset(k convKey) {
	bp := t.bufs.Get().(*[]byte)
	b := appendReset((*bp)[:t.o.Headroom], k)
	t.sendBufs(k.peer, [][]byte{b})
	t.bufs.Put(bp)
}

// sendBufs hands segments to Options.Send and counts them.
func (t *Transport) sendBufs(dst session.NodeID, bufs [][]byte) {
	if len(bufs) == 0 {
		return
	}
	t.stats.segmentsSent.Add(int64(len(bufs)))
	if err := t.o.Send(dst, bufs, t.o.Headroom); err != nil {
		t.stats.sendErrors.Add(1)
	}
}

// FlushInput sends the ACKs (and the data they let through) of every conversation that received
// segments since the last call. The node calls it after each batch it read from the underlay.
func (t *Transport) FlushInput() {
	t.mu.RLock()
	closed := t.closed
	t.mu.RUnlock()
	if closed {
		return
	}
	t.dirtyMu.Lock()
	d := t.dirty
	t.dirty = nil
	t.dirtyMu.Unlock()
	for _, c := range d {
		c.flushDirty()
	}
}

func (t *Transport) markDirty(c *conv) {
	t.dirtyMu.Lock()
	t.dirty = append(t.dirty, c)
	t.dirtyMu.Unlock()
}

// fire runs a conversation's timer (scheduler goroutine).
func (t *Transport) fire(c *conv) { c.timer() }

// newID picks a conversation id this node does not use with peer.
func (t *Transport) newKey(peer session.NodeID) convKey {
	for {
		k := convKey{peer: peer, id: rand.Uint32(), mine: true}
		if _, used := t.convs[k]; !used {
			if _, recent := t.recent[k]; !recent {
				return k
			}
		}
	}
}

// Open asks node dst to re-originate the flow req and returns once dst's verdict arrived: a Stream
// ready for data when accepted; an error matching ErrRefused or ErrUnreachable when refused; ctx.Err()
// when ctx ends first.
func (t *Transport) Open(ctx context.Context, dst session.NodeID, req OpenRequest) (*Stream, error) {
	payload, err := openPayload(req)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, fmt.Errorf("proxy transport: %w", net.ErrClosed)
	}
	if len(t.convs) >= t.o.MaxFlows || t.perPeer[dst] >= t.o.MaxFlowsPerPeer {
		t.mu.Unlock()
		t.stats.refused.Add(1)
		return nil, fmt.Errorf("open flow %v via node %s: %w (%d in all, %d per node)", req, dst, ErrTooManyFlows, t.o.MaxFlows, t.o.MaxFlowsPerPeer)
	}
	c := t.newConv(t.newKey(dst))
	t.addConv(c)
	t.mu.Unlock()
	st := c.st
	st.req = req
	if err := st.writeFrame(frameOpen, payload); err != nil {
		st.Reset()
		return nil, fmt.Errorf("open flow %v via node %s: send request: %w", req, dst, err)
	}
	reason, err := st.readVerdict(ctx)
	if err != nil {
		st.Reset()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("open flow %v via node %s: %w", req, dst, err)
	}
	if reason != verdictOK {
		st.release()
		return nil, fmt.Errorf("open flow %v via node %s: %w", req, dst, reason.err())
	}
	return st, nil
}

// serveStream reads a new conversation's open request and hands it to Options.Accept.
func (t *Transport) serveStream(c *conv) {
	defer t.wg.Done()
	st := c.st
	ctx, cancel := context.WithTimeout(context.Background(), OpenTimeout)
	req, err := st.readOpen(ctx)
	cancel()
	if err != nil {
		if !errors.Is(err, ErrReset) && !errors.Is(err, net.ErrClosed) {
			t.log.Warn("bad flow open request", "peer", c.key.peer, "err", err)
		}
		st.Reset()
		return
	}
	st.req = req
	if t.o.Accept == nil {
		st.Refuse(RefusedPolicy)
		return
	}
	t.o.Accept(c.key.peer, req, st)
}

// addConv registers a new conversation; t.mu held.
func (t *Transport) addConv(c *conv) {
	t.convs[c.key] = c
	t.perPeer[c.key.peer]++
}

// remove forgets c (its lock held by the caller or c unreachable): later segments of it get a reset
// for recentTTL.
func (t *Transport) remove(c *conv) {
	now := t.nowMs()
	t.mu.Lock()
	if t.convs[c.key] == c {
		delete(t.convs, c.key)
		if t.perPeer[c.key.peer]--; t.perPeer[c.key.peer] <= 0 {
			delete(t.perPeer, c.key.peer)
		}
	}
	if len(t.recent) >= maxRecent {
		for k, until := range t.recent {
			if until <= now || len(t.recent) >= maxRecent {
				delete(t.recent, k)
			}
		}
	}
	t.recent[c.key] = now + recentTTL.Milliseconds()
	t.mu.Unlock()
}

// ClosePeer resets every flow with node and tells the node so (best effort). The node calls it when
// the peer is lost.
func (t *Transport) ClosePeer(node session.NodeID) {
	t.mu.Lock()
	var cs []*conv
	for k, c := range t.convs {
		if k.peer == node {
			cs = append(cs, c)
		}
	}
	t.mu.Unlock()
	for _, c := range cs {
		c.st.Reset()
	}
}

// Close resets every flow, ends all conversations and waits for the transport's goroutines, including
// running Accept callbacks.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	cs := make([]*conv, 0, len(t.convs))
	for _, c := range t.convs {
		cs = append(cs, c)
	}
	t.mu.Unlock()
	for _, c := range cs {
		c.st.Reset()
	}
	close(t.stop)
	t.wg.Wait()
	return nil
}
