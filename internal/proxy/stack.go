// Package proxy is weft's transparent TCP proxy: a gVisor netstack that
// terminates proxied flows on the source node and re-originates them with
// their original 4-tuple on the destination node, and the streams that carry
// them between the two.
package proxy

// Packet flow through the Stack (one per node, both roles at once):
//
//	TUN read ──► node: Owns(pkt)? ──yes──► Inject ──► channel link ──► netstack TCP
//	             (or a SYN it chose to proxy: Claim, then Inject)
//	netstack TCP ──► channel link queue ──► pump goroutine: up to outBatch packets at once, each
//	copied at OutputOffset into its own reused buffer ──► Output(pkts, offset) ──► one batched
//	TUN write (wireguard-go's tun coalesces the TCP segments of a batch, GRO)
//
// Source role: a claimed SYN reaches the tcp.Forwarder, which calls
// StackOptions.Forward on a new goroutine with a Request; Accept completes the
// handshake (SYN-ACK out through Output), Reject answers with a RST.
// Destination role: Dial binds a netstack endpoint to the client's address
// (spoofing) and connects to the server; the SYN leaves through Output into
// the node's own TUN, so the node's kernel sees an ordinary inbound
// connection, and its replies come back from the TUN through Owns and Inject.
//
// The netstack NIC has no address: promiscuous mode lets it accept packets
// for any destination, spoofing lets it send from any source, and one
// 0.0.0.0/0 route sends everything out of the link. It computes real
// checksums (no TX checksum offload: the kernel would drop the segments).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	// DefaultTimeWait is the TIME_WAIT length of netstack endpoints when
	// StackOptions.TimeWait is 0. TIME_WAIT absorbs a retransmitted FIN and
	// delayed segments; between netstack and the node's own kernel (one TUN
	// hop, sub-millisecond RTT) 15 s is far beyond any segment lifetime, and
	// it keeps the flow table 4x smaller than Linux's 60 s under churn.
	DefaultTimeWait = 15 * time.Second

	nicID        = 1
	outBatch     = 64               // packets handed to Output at once at most
	outQueueLen  = 4096             // channel link queue: ~ a 4 MiB window of 1420-byte segments
	maxCoalesced = 65535            // the largest packet the TUN's GRO builds in a pump buffer
	maxInFlight  = 1024             // SYNs awaiting Accept/Reject at once; more are dropped (the client retries)
	bufferMax    = 4 << 20          // send and receive buffer ceiling per endpoint
	bufferStart  = 1 << 20          // initial buffers; receive buffer moderation grows them
	reapInterval = time.Second      // how often released flows leave the table
	claimTTL     = 30 * time.Second // a claimed SYN the forwarder never saw is forgotten after this
	flushWait    = 100 * time.Millisecond
)

// ErrClosed is returned by Dial and Accept after the Stack is closed.
var ErrClosed = errors.New("proxy: netstack is closed")

// StackOptions configures NewStack.
type StackOptions struct {
	// MTU is the netstack NIC MTU; use the TUN device's MTU. Required.
	MTU int
	// Output receives the IPv4 packets netstack emits, in batches (write
	// them into the node's TUN in one batched write): each packet is
	// pkts[i][OutputOffset:], and has spare capacity behind it. The slices
	// are valid only during the call. Calls come from one goroutine owned
	// by the Stack. Required.
	Output func(pkts [][]byte, offset int)
	// OutputOffset is the headroom before each packet handed to Output
	// (the TUN device's virtio header room).
	OutputOffset int
	// Forward is called on its own goroutine for each new flow whose SYN was
	// injected (source role). It must call exactly one of r.Accept() or
	// r.Reject() before it returns (typically after asking the destination
	// node whether its dial succeeded); a request left unanswered when
	// Forward returns is rejected. Nil rejects every flow (destination-only
	// nodes).
	Forward func(r *Request)
	// Log receives the Stack's diagnostics; nil discards them.
	Log *slog.Logger
	// TimeWait is the TIME_WAIT length of netstack endpoints; 0 means
	// DefaultTimeWait.
	TimeWait time.Duration
}

// Stack is the node's netstack. Its methods are safe for concurrent use.
type Stack struct {
	st     *stack.Stack
	link   *channel.Endpoint
	flows  *flowTable
	output func([][]byte, int)
	outOff int
	fwd    func(*Request)
	log    *slog.Logger
	mtu    int

	ctx    context.Context // ends when Close starts; Request.Context
	cancel context.CancelFunc

	mu       sync.Mutex // guards closing and handlers.Add
	closing  bool
	handlers sync.WaitGroup // running forwarder handlers
	workers  sync.WaitGroup // pump and reaper
	stop     chan struct{}  // closed to stop pump and reaper
	once     sync.Once
}

// NewStack creates the netstack and starts its output pump and flow reaper.
func NewStack(o StackOptions) (*Stack, error) {
	if o.MTU < 68 || o.MTU > 65535 {
		return nil, fmt.Errorf("new netstack: MTU %d is out of range: use the TUN device's MTU (68 to 65535)", o.MTU)
	}
	if o.Output == nil {
		return nil, errors.New("new netstack: Output is nil: pass a function that writes packets into the TUN")
	}
	if o.TimeWait < 0 {
		return nil, fmt.Errorf("new netstack: TimeWait %v is negative: use 0 for the default (%v)", o.TimeWait, DefaultTimeWait)
	}
	if o.TimeWait == 0 {
		o.TimeWait = DefaultTimeWait
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	st := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	link := channel.New(outQueueLen, uint32(o.MTU), "") // no capabilities: real checksums
	if err := configure(st, link, o.TimeWait); err != nil {
		st.Destroy()
		link.Close()
		return nil, fmt.Errorf("new netstack: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stack{
		st: st, link: link, flows: newFlowTable(), output: o.Output, outOff: o.OutputOffset, fwd: o.Forward,
		log: o.Log, mtu: o.MTU, ctx: ctx, cancel: cancel, stop: make(chan struct{}),
	}
	f := tcp.NewForwarder(st, bufferStart, maxInFlight, s.handleSYN)
	st.SetTransportProtocolHandler(tcp.ProtocolNumber, f.HandlePacket)
	s.workers.Add(2)
	go s.pump()
	go s.reaper()
	return s, nil
}

// configure sets the TCP options and the promiscuous, spoofing NIC.
func configure(st *stack.Stack, link *channel.Endpoint, timeWait time.Duration) error {
	sack := tcpip.TCPSACKEnabled(true)
	rack := tcpip.TCPRecovery(0) // RACK off
	cc := tcpip.CongestionControlOption("reno")
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	tw := tcpip.TCPTimeWaitTimeoutOption(timeWait)
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: bufferStart, Max: bufferMax}
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: bufferStart, Max: bufferMax}
	opts := []struct {
		name string
		v    tcpip.SettableTransportProtocolOption
	}{
		{"SACK", &sack}, {"recovery", &rack}, {"congestion control", &cc},
		{"receive buffer moderation", &moderate}, {"TIME_WAIT", &tw},
		{"send buffer", &snd}, {"receive buffer", &rcv},
	}
	for _, o := range opts {
		if err := st.SetTransportProtocolOption(tcp.ProtocolNumber, o.v); err != nil {
			return fmt.Errorf("set TCP %s option: %w", o.name, convertErr(err))
		}
	}
	if err := st.CreateNIC(nicID, link); err != nil {
		return fmt.Errorf("create NIC: %w", convertErr(err))
	}
	if err := st.SetPromiscuousMode(nicID, true); err != nil {
		return fmt.Errorf("set promiscuous mode: %w", convertErr(err))
	}
	if err := st.SetSpoofing(nicID, true); err != nil {
		return fmt.Errorf("enable spoofing: %w", convertErr(err))
	}
	st.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nicID}})
	return nil
}

// Owns reports whether an IPv4 TCP packet read from the TUN belongs to a
// flow netstack holds, in either direction (source role: client->server
// packets of a claimed or accepted flow; destination role: server->client
// replies of a re-originated flow). It parses only the headers, does not
// allocate and is safe for concurrent use. Non-TCP, malformed and non-first
// fragment packets are never owned.
func (s *Stack) Owns(pkt []byte) bool {
	k, _, ok := parseTCP4(pkt)
	return ok && s.flows.owns(k)
}

// Claim marks a flow as netstack's from its first SYN on: call it right
// before injecting a SYN chosen for proxying, so that retransmitted SYNs are
// Owned too. The entry is removed once netstack releases the flow's endpoint
// (TIME_WAIT included), when Forward rejects the flow, or after 30 s if the
// SYN never reached netstack. Claiming an owned flow does nothing. An
// invalid id (not IPv4, port 0) is ignored.
func (s *Stack) Claim(id FlowID) {
	if id.validate() != nil {
		return
	}
	s.flows.claim(keyOf(id), time.Now())
}

// Inject hands netstack one IPv4 packet read from the TUN; the caller may
// reuse pkt after Inject returns. Only packets of owned flows are accepted
// (see Owns and Claim): anything else is dropped, since netstack would answer
// it with a RST and could kill a kernel connection. Malformed packets are
// dropped too (netstack verifies the checksums).
func (s *Stack) Inject(pkt []byte) {
	k, _, ok := parseTCP4(pkt)
	if !ok || !s.flows.owns(k) {
		return
	}
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if total < ipv4MinHeader || total > len(pkt) {
		return
	}
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt[:total])})
	s.link.InjectInbound(ipv4.ProtocolNumber, pb)
	pb.DecRef()
}

// NetstackCounters are netstack's own counters of what it could not carry: what a proxied flow that
// slows down or stalls on this node is to be diagnosed with.
type NetstackCounters struct {
	// QueueFull: packets netstack emitted towards the TUN and dropped because its output queue was full
	// (TCP retransmits data, but a lost window update waits for the kernel peer's probe).
	QueueFull uint64
	// Timeouts: TCP retransmission timeouts of netstack's connections.
	Timeouts uint64
	// SegmentsDropped: packets netstack dropped at the transport layer.
	SegmentsDropped uint64
}

// Counters returns netstack's counters.
func (s *Stack) Counters() NetstackCounters {
	st := s.st.Stats()
	return NetstackCounters{
		QueueFull:       st.NICs.TxPacketsDroppedNoBufferSpace.Value(),
		Timeouts:        st.TCP.Timeouts.Value(),
		SegmentsDropped: st.DroppedPackets.Value(),
	}
}

// Flows lists the flows netstack owns now, oldest first.
func (s *Stack) Flows() []FlowState {
	return s.flows.list()
}

// pump hands the packets netstack emits to Output in batches, until Close:
// it waits for one packet, then takes what else is queued, up to outBatch.
func (s *Stack) pump() {
	defer s.workers.Done()
	// Each buffer has room for a 64 KiB packet behind the offset: the TUN's GRO coalesces the TCP
	// segments of a batch into the first one's buffer, and only within its capacity.
	bufs := make([][]byte, outBatch)
	for i := range bufs {
		bufs[i] = make([]byte, s.outOff+s.mtu, s.outOff+maxCoalesced)
	}
	batch := make([][]byte, 0, outBatch)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // ReadContext wakes on a context, not a channel
		<-s.stop
		cancel()
	}()
	for {
		pkt := s.link.ReadContext(ctx)
		if pkt == nil {
			return
		}
		batch = batch[:0]
		for pkt != nil {
			n := copyPacket(bufs[len(batch)][s.outOff:], pkt)
			pkt.DecRef()
			if n < 0 {
				s.log.Warn("netstack emitted a packet larger than the MTU; dropped", "mtu", s.mtu)
			} else {
				batch = append(batch, bufs[len(batch)][:s.outOff+n])
			}
			if len(batch) == outBatch {
				break
			}
			pkt = s.link.Read()
		}
		if len(batch) > 0 {
			s.output(batch, s.outOff)
		}
	}
}

// copyPacket flattens pkt into buf without allocating and returns its
// length, or -1 if it does not fit.
func copyPacket(buf []byte, pkt *stack.PacketBuffer) int {
	if pkt.Size() > len(buf) {
		return -1
	}
	vl, off := pkt.AsViewList()
	n := 0
	for v := vl.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(buf[n:], b[off:])
		off = 0
	}
	return n
}

// reaper removes released flows from the table every reapInterval.
func (s *Stack) reaper() {
	defer s.workers.Done()
	t := time.NewTicker(reapInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			if n := s.flows.reap(now, claimTTL); n > 0 {
				s.log.Debug("released netstack flows", "count", n)
			}
		}
	}
}

// Close resets every netstack connection (RST to the kernel peers, best
// effort), waits for running Forward calls (their Request.Context ends) and
// for netstack's goroutines, and stops the pump. Closing twice is harmless.
func (s *Stack) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		s.cancel()
		s.st.Close() // aborts registered endpoints, including handshakes in Accept
		s.handlers.Wait()
		for deadline := time.Now().Add(flushWait); s.link.NumQueued() > 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond) // let the pump write the RSTs
		}
		s.st.Wait()
		close(s.stop)
		s.workers.Wait()
		s.link.Close()
	})
	return nil
}

// Dial re-originates a flow (destination role): a TCP connection from
// id.Src to id.Dst with the client's address as source (spoofing), whose
// packets come out of Output. The flow is Owned from before the SYN leaves.
// Dial returns when the handshake completes or fails: a refused connection
// gives an error for which errors.Is(err, syscall.ECONNREFUSED); a server
// that never answers gives ctx's error (errors.Is(err,
// context.DeadlineExceeded)) or, if netstack gives up first, ETIMEDOUT. A
// flow whose previous connection netstack still holds (TIME_WAIT) fails with
// syscall.EADDRINUSE.
func (s *Stack) Dial(ctx context.Context, id FlowID) (*Conn, error) {
	if err := id.validate(); err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	if s.isClosing() {
		return nil, fmt.Errorf("dial %s: %w", id, ErrClosed)
	}
	var wq waiter.Queue
	ep, terr := s.st.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		return nil, fmt.Errorf("dial %s: new endpoint: %w", id, convertErr(terr))
	}
	entry, added := s.flows.addDial(keyOf(id), ep, time.Now())
	if !added {
		ep.Close()
		return nil, fmt.Errorf("dial %s: netstack still holds an earlier connection with this 4-tuple: %w", id, syscall.EADDRINUSE)
	}
	we, ready := waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)
	// A client's kernel reuses one source port towards different servers; netstack still holds the
	// earlier flow's endpoint in TIME_WAIT, bound to that address and port. Like the client's kernel,
	// allow the bind: the 4-tuple is unique (addDial checked it).
	ep.SocketOptions().SetReuseAddress(true)
	ep.SocketOptions().SetReusePort(true)
	if terr := ep.Bind(fullAddr(id.Src)); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("dial %s: bind the client address: %w", id, convertErr(terr))
	}
	terr = ep.Connect(fullAddr(id.Dst))
	if _, started := terr.(*tcpip.ErrConnectStarted); started {
		select {
		case <-ctx.Done():
			ep.Close()
			return nil, fmt.Errorf("dial %s: no answer from the server: %w", id, ctx.Err())
		case <-ready:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, fmt.Errorf("dial %s: %w", id, convertErr(terr))
	}
	c := newConn(&wq, ep)
	c.entry = entry
	return c, nil
}

// isClosing reports whether Close has started.
func (s *Stack) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// handleSYN runs on the forwarder's goroutine for each new claimed SYN.
func (s *Stack) handleSYN(fr *tcp.ForwarderRequest) {
	tid := fr.ID() // before Complete, which releases the request
	id := FlowID{
		Src: netip.AddrPortFrom(addrOf(tid.RemoteAddress), tid.RemotePort),
		Dst: netip.AddrPortFrom(addrOf(tid.LocalAddress), tid.LocalPort),
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		fr.Complete(true)
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()

	k := keyOf(id)
	r := &Request{s: s, fr: fr, id: id, key: k, entry: s.flows.forwarding(k, time.Now())}
	if s.fwd != nil {
		s.fwd(r)
	}
	if !r.answered.Load() {
		if s.fwd != nil {
			s.log.Warn("Forward returned without answering; rejecting the flow", "flow", id.String())
		}
		r.Reject()
	}
}

// Request is a new flow waiting for the source node's verdict. Call exactly
// one of Accept or Reject.
type Request struct {
	s        *Stack
	fr       *tcp.ForwarderRequest
	id       FlowID
	key      flowKey
	entry    *flowEntry
	answered atomic.Bool
}

// ID returns the flow's 4-tuple: Src is the client, Dst the server it
// connected to.
func (r *Request) ID() FlowID { return r.id }

// Context ends when the Stack starts closing; Forward should give up then.
func (r *Request) Context() context.Context { return r.s.ctx }

// Accept completes the handshake with the client (SYN-ACK) and returns the
// connection once it is established. It fails if the client went away, if
// the Stack is closing, or if the request was answered already.
func (r *Request) Accept() (*Conn, error) {
	if !r.answered.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("accept %s: the request was answered already", r.id)
	}
	if r.s.isClosing() {
		r.reset()
		return nil, fmt.Errorf("accept %s: %w", r.id, ErrClosed)
	}
	var wq waiter.Queue
	ep, terr := r.fr.CreateEndpoint(&wq)
	if terr != nil {
		r.reset()
		return nil, fmt.Errorf("accept %s: handshake with the client: %w", r.id, convertErr(terr))
	}
	r.fr.Complete(false)
	r.s.flows.setEndpoint(r.key, r.entry, ep)
	c := newConn(&wq, ep)
	c.entry = r.entry
	return c, nil
}

// Reject answers the client's SYN with a RST: its connect() fails with
// ECONNREFUSED. Rejecting an answered request does nothing.
func (r *Request) Reject() {
	if r.answered.CompareAndSwap(false, true) {
		r.reset()
	}
}

// reset forgets the flow and sends the RST, in that order: once the client sees the refusal the flow
// is gone from the table.
func (r *Request) reset() {
	r.s.flows.remove(r.key, r.entry)
	r.fr.Complete(true)
}

// convertErr turns a gVisor tcpip.Error into a Go error, as the matching
// syscall errno where one exists.
func convertErr(e tcpip.Error) error {
	switch e.(type) {
	case *tcpip.ErrConnectionRefused:
		return syscall.ECONNREFUSED
	case *tcpip.ErrConnectionReset:
		return syscall.ECONNRESET
	case *tcpip.ErrConnectionAborted, *tcpip.ErrAborted:
		return syscall.ECONNABORTED
	case *tcpip.ErrTimeout:
		return syscall.ETIMEDOUT
	case *tcpip.ErrClosedForSend:
		return syscall.EPIPE
	case *tcpip.ErrNetworkUnreachable, *tcpip.ErrNoNet:
		return syscall.ENETUNREACH
	case *tcpip.ErrHostUnreachable:
		return syscall.EHOSTUNREACH
	case *tcpip.ErrPortInUse:
		return syscall.EADDRINUSE
	case *tcpip.ErrBadLocalAddress:
		return syscall.EADDRNOTAVAIL
	}
	return fmt.Errorf("netstack: %s", e)
}

// fullAddr converts an IPv4 AddrPort to netstack's form.
func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{Addr: tcpip.AddrFrom4(ap.Addr().As4()), Port: ap.Port()}
}

// addrOf converts a netstack IPv4 address.
func addrOf(a tcpip.Address) netip.Addr {
	return netip.AddrFrom4(a.As4())
}
