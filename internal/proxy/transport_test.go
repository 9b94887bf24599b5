package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/session"
)

const (
	nodeA session.NodeID = 0xa
	nodeB session.NodeID = 0xb
	nodeC session.NodeID = 0xc
)

// fakeNet connects Transports like the node's routed sessions would: Send
// copies the segment into the receiver's queue (dropping when full, like
// UDP), optionally losing a fraction of them and delaying each by a fixed
// latency; one goroutine per node delivers in order.
type fakeNet struct {
	loss  float64
	delay time.Duration

	mu     sync.Mutex
	rng    *rand.Rand
	queues map[session.NodeID]chan fakePkt
	nodes  map[session.NodeID]*Transport
	wg     sync.WaitGroup
	closed bool
	// cut drops everything while true (a lost peer).
	cut bool
	// overflow counts segments dropped because a receive queue was full.
	overflow atomic.Int64
}

type fakePkt struct {
	src session.NodeID
	at  time.Time
	seg []byte
}

func newFakeNet(loss float64, delay time.Duration) *fakeNet {
	return &fakeNet{loss: loss, delay: delay, rng: rand.New(rand.NewPCG(1, 2)),
		queues: map[session.NodeID]chan fakePkt{}, nodes: map[session.NodeID]*Transport{}}
}

func (n *fakeNet) sender(src session.NodeID) func(session.NodeID, []byte) error {
	return func(dst session.NodeID, seg []byte) error {
		// seg is one segment
		n.mu.Lock()
		defer n.mu.Unlock()
		q := n.queues[dst]
		if n.closed || n.cut || q == nil || n.rng.Float64() < n.loss {
			return nil
		}
		select {
		case q <- fakePkt{src: src, at: time.Now().Add(n.delay), seg: bytes.Clone(seg)}:
		default: // queue full: dropped, like a UDP socket buffer
			n.overflow.Add(1)
		}
		return nil
	}
}

// add starts a Transport for id on the network.
func (n *fakeNet) add(t testing.TB, id session.NodeID, accept func(session.NodeID, OpenRequest, *Stream), kc KCPConfig) *Transport {
	t.Helper()
	return n.addOpts(t, TransportOptions{Self: id, MaxSegment: 1380, Accept: accept, KCP: kc})
}

// addOpts starts a Transport with o on the network; o.Send, if set, sees
// each batch before the network does.
func (n *fakeNet) addOpts(t testing.TB, o TransportOptions) *Transport {
	t.Helper()
	id, send, tap := o.Self, n.sender(o.Self), o.Send
	o.Send = func(dst session.NodeID, bufs [][]byte, off int) error {
		if tap != nil {
			tap(dst, bufs, off)
		}
		for _, b := range bufs {
			send(dst, b[off:])
		}
		return nil
	}
	tr, err := NewTransport(o)
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nodes[id] = tr
	if n.queues[id] != nil {
		return tr // a restarted node: the running delivery goroutine finds it
	}
	q := make(chan fakePkt, 8192)
	n.queues[id] = q
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for p := range q {
			if d := time.Until(p.at); d > 0 {
				time.Sleep(d)
			}
			n.mu.Lock()
			dst := n.nodes[id]
			n.mu.Unlock()
			if dst != nil {
				dst.Deliver(p.src, p.seg)
				if len(q) == 0 { // the end of a "read batch"
					dst.FlushInput()
				}
			}
		}
	}()
	return tr
}

func (n *fakeNet) setCut(cut bool) {
	n.mu.Lock()
	n.cut = cut
	n.mu.Unlock()
}

// close closes every Transport, then the delivery goroutines.
func (n *fakeNet) close() {
	n.mu.Lock()
	nodes := n.nodes
	n.nodes = map[session.NodeID]*Transport{}
	n.mu.Unlock()
	for _, tr := range nodes {
		tr.Close()
	}
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		for _, q := range n.queues {
			close(q)
		}
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// pair returns transports A and B on a network; B accepts with acceptB.
func pair(t testing.TB, loss float64, delay time.Duration, acceptA, acceptB func(session.NodeID, OpenRequest, *Stream)) (*fakeNet, *Transport, *Transport) {
	n := newFakeNet(loss, delay)
	a := n.add(t, nodeA, acceptA, KCPConfig{})
	b := n.add(t, nodeB, acceptB, KCPConfig{})
	t.Cleanup(n.close)
	return n, a, b
}

var testReq = OpenRequest{
	Src: netip.MustParseAddrPort("10.144.144.2:41822"),
	Dst: netip.MustParseAddrPort("10.144.144.1:6379"),
}

// acceptInto accepts every flow and passes the stream on.
func acceptInto(ch chan<- *Stream) func(session.NodeID, OpenRequest, *Stream) {
	return func(_ session.NodeID, _ OpenRequest, st *Stream) {
		if err := st.Accept(); err != nil {
			st.Reset()
			return
		}
		ch <- st
	}
}

func openT(t *testing.T, tr *Transport, dst session.NodeID) *Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := tr.Open(ctx, dst, testReq)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return st
}

func recvT(t *testing.T, ch <-chan *Stream) *Stream {
	t.Helper()
	select {
	case st := <-ch:
		return st
	case <-time.After(5 * time.Second):
		t.Fatal("no stream accepted within 5s")
		return nil
	}
}

func readN(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return string(b)
}

// readErrWithin reads from st until an error and fails unless it arrives
// within d.
func readErrWithin(t *testing.T, st *Stream, d time.Duration) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, st)
		if err == nil {
			err = io.EOF
		}
		ch <- err
	}()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatalf("Read did not return an error within %v", d)
		return nil
	}
}

func TestTransportOpenAcceptData(t *testing.T) {
	got := make(chan *Stream, 1)
	var src session.NodeID
	var req OpenRequest
	_, a, _ := pair(t, 0, 0, nil, func(s session.NodeID, r OpenRequest, st *Stream) {
		src, req = s, r
		acceptInto(got)(s, r, st)
	})
	sa := openT(t, a, nodeB)
	sb := recvT(t, got)
	if src != nodeA || req != testReq || sb.Request() != testReq || sb.Peer() != nodeA || sa.Peer() != nodeB {
		t.Fatalf("accepted src %s req %v (stream %v from %s), want %s %v", src, req, sb.Request(), sb.Peer(), nodeA, testReq)
	}
	if _, err := sa.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if s := readN(t, sb, 4); s != "ping" {
		t.Fatalf("B read %q, want ping", s)
	}
	if _, err := sb.Write([]byte("pong!")); err != nil {
		t.Fatal(err)
	}
	if s := readN(t, sa, 5); s != "pong!" {
		t.Fatalf("A read %q, want pong!", s)
	}
	if r, w := sa.Bytes(); r != 5 || w != 4 {
		t.Fatalf("A Bytes() = %d read, %d written; want 5, 4", r, w)
	}
	if st := a.Stats(); st.PayloadSent != 4 || st.PayloadReceived != 5 || st.SegmentsSent == 0 || st.SegmentsRecv == 0 {
		t.Fatalf("A Stats() = %+v", st)
	}
	// A second flow reuses the session.
	sa2 := openT(t, a, nodeB)
	sb2 := recvT(t, got)
	sa2.Write([]byte("x"))
	if s := readN(t, sb2, 1); s != "x" {
		t.Fatalf("second flow read %q", s)
	}
	for _, s := range []*Stream{sa, sb, sa2, sb2} {
		s.Close()
	}
}

func TestTransportRefuse(t *testing.T) {
	tests := []struct {
		name    string
		refusal Refusal // 0: no Accept callback
		want    error
		notWant error
	}{
		{"conn refused", RefusedConn, ErrRefused, ErrUnreachable},
		{"unreachable", RefusedUnreachable, ErrUnreachable, ErrRefused},
		{"policy", RefusedPolicy, ErrRefused, ErrUnreachable},
		{"no Accept callback", 0, ErrRefused, ErrUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			accept := func(_ session.NodeID, _ OpenRequest, st *Stream) { st.Refuse(tt.refusal) }
			if tt.refusal == 0 {
				accept = nil
			}
			_, a, _ := pair(t, 0, 0, nil, accept)
			start := time.Now()
			st, err := a.Open(context.Background(), nodeB, testReq)
			if !errors.Is(err, tt.want) || errors.Is(err, tt.notWant) || st != nil {
				t.Fatalf("Open = %v, %v; want error matching %v only", st, err, tt.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("refusal took %v", d)
			}
		})
	}
}

func TestTransportOpenContext(t *testing.T) {
	release := make(chan struct{})
	n, a, _ := pair(t, 0, 0, nil, func(_ session.NodeID, _ OpenRequest, st *Stream) {
		<-release // never answers until the test ends
		st.Reset()
	})
	defer close(release) // before the network closes (Close waits for Accept)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := a.Open(ctx, nodeB, testReq); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open with silent destination = %v, want context.DeadlineExceeded", err)
	}
	n.setCut(true) // nothing arrives at all
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel2)
	if _, err := a.Open(ctx2, nodeB, testReq); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open over a cut link = %v, want context.Canceled", err)
	}
	if _, err := a.Open(context.Background(), nodeB, OpenRequest{}); err == nil {
		t.Fatal("Open with an invalid request succeeded")
	}
}

func TestTransportHalfClose(t *testing.T) {
	got := make(chan *Stream, 2)
	_, a, _ := pair(t, 0, 0, nil, acceptInto(got))

	// The client sends its request and FIN; the reply still arrives.
	sa := openT(t, a, nodeB)
	sb := recvT(t, got)
	sa.Write([]byte("request"))
	if err := sa.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := sa.Write([]byte("more")); err == nil {
		t.Fatal("Write after CloseWrite succeeded")
	}
	req, err := io.ReadAll(sb)
	if err != nil || string(req) != "request" {
		t.Fatalf("B ReadAll = %q, %v; want request, nil (EOF)", req, err)
	}
	if _, err := sb.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("B Read after EOF = %v, want io.EOF again", err)
	}
	time.Sleep(50 * time.Millisecond) // the reply goes out after A's FIN arrived
	sb.Write([]byte("reply"))
	sb.CloseWrite()
	rep, err := io.ReadAll(sa)
	if err != nil || string(rep) != "reply" {
		t.Fatalf("A ReadAll = %q, %v; want reply, nil (EOF)", rep, err)
	}
	sa.Close()
	sb.Close()

	// The other direction: the destination closes first, the source keeps writing.
	sa = openT(t, a, nodeB)
	sb = recvT(t, got)
	sb.CloseWrite()
	if _, err := io.ReadAll(sa); err != nil {
		t.Fatalf("A ReadAll after B's FIN: %v", err)
	}
	if _, err := sa.Write([]byte("after-fin")); err != nil {
		t.Fatalf("A Write after B's FIN: %v", err)
	}
	if s := readN(t, sb, 9); s != "after-fin" {
		t.Fatalf("B read %q", s)
	}
	sa.CloseWrite()
	if err := readErrWithin(t, sb, time.Second); err != io.EOF {
		t.Fatalf("B Read after both FINs = %v, want io.EOF", err)
	}
	sa.Close()
	sb.Close()
}

func TestTransportReset(t *testing.T) {
	got := make(chan *Stream, 1)
	_, a, _ := pair(t, 0, 0, nil, acceptInto(got))

	t.Run("source resets", func(t *testing.T) {
		sa := openT(t, a, nodeB)
		sb := recvT(t, got)
		sa.Write([]byte("abc"))
		sa.Reset()
		if err := readErrWithin(t, sb, time.Second); !errors.Is(err, ErrReset) {
			t.Fatalf("B Read after A's reset = %v, want ErrReset", err)
		}
		if _, err := sb.Write([]byte("x")); !errors.Is(err, ErrReset) {
			t.Fatalf("B Write after A's reset = %v, want ErrReset", err)
		}
		if _, err := sa.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("A Read after its own reset = %v, want an error", err)
		}
		sb.Close()
	})
	t.Run("destination resets", func(t *testing.T) {
		sa := openT(t, a, nodeB)
		sb := recvT(t, got)
		sb.Close() // Close before FIN both ways resets
		if err := readErrWithin(t, sa, time.Second); !errors.Is(err, ErrReset) {
			t.Fatalf("A Read after B's Close = %v, want ErrReset", err)
		}
	})
	t.Run("reset after FIN fails the writer", func(t *testing.T) {
		sa := openT(t, a, nodeB)
		sb := recvT(t, got)
		sa.CloseWrite()
		if _, err := io.ReadAll(sb); err != nil {
			t.Fatal(err)
		}
		sa.Reset()
		deadline := time.Now().Add(time.Second)
		for {
			_, err := sb.Write([]byte("into the void"))
			if errors.Is(err, ErrReset) {
				break
			}
			if err != nil || time.Now().After(deadline) {
				t.Fatalf("B Write after A's FIN then RST = %v, want ErrReset within 1s", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		sb.Close()
	})
}

func TestTransportClosePeer(t *testing.T) {
	gotA, gotB := make(chan *Stream, 1), make(chan *Stream, 1)
	_, a, b := pair(t, 0, 0, acceptInto(gotA), acceptInto(gotB))
	ab := openT(t, a, nodeB) // a flow on A's session
	ba := recvT(t, gotB)
	bb := openT(t, b, nodeA) // a flow on B's session
	aa := recvT(t, gotA)
	for _, s := range []*Stream{ab, ba, bb, aa} {
		s.Write([]byte("live"))
	}

	a.ClosePeer(nodeB) // only A notices the loss
	var wg sync.WaitGroup
	for i, s := range []*Stream{ab, ba, bb, aa} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.ReadFull(s, make([]byte, 4))
			if err := readErrWithin(t, s, time.Second); err == nil || err == io.EOF {
				t.Errorf("stream %d: Read after ClosePeer = %v, want an error", i, err)
			}
			if _, err := s.Write([]byte("x")); err == nil {
				t.Errorf("stream %d: Write after ClosePeer succeeded", i)
			}
			s.Close()
		}()
	}
	wg.Wait()

	// New flows work again both ways on fresh sessions.
	s := openT(t, a, nodeB)
	s2 := recvT(t, gotB)
	s.Write([]byte("again"))
	if got := readN(t, s2, 5); got != "again" {
		t.Fatalf("after ClosePeer read %q", got)
	}
	s3 := openT(t, b, nodeA)
	recvT(t, gotA).Close()
	s.Close()
	s2.Close()
	s3.Close()
}

// TestTransportPeerRestart: a peer that lost its state (a new Transport for
// the same node ID) gets fresh sessions, and the survivor's old flows in both
// directions fail instead of hanging.
func TestTransportPeerRestart(t *testing.T) {
	gotA, gotB := make(chan *Stream, 1), make(chan *Stream, 1)
	n, a, b := pair(t, 0, 0, acceptInto(gotA), acceptInto(gotB))
	ab := openT(t, a, nodeB)
	oldIn := recvT(t, gotB) // on A's session, B's in-link
	oldOut := openT(t, b, nodeA)
	recvT(t, gotA)
	ab.Write([]byte("x"))
	readN(t, oldIn, 1)

	a.Close() // A restarts: a new Transport takes its place
	a2 := n.add(t, nodeA, acceptInto(gotA), KCPConfig{})
	s := openT(t, a2, nodeB) // a fresh session replaces B's in-link
	recvT(t, gotB).Close()
	s.Close()
	if err := readErrWithin(t, oldIn, time.Second); !errors.Is(err, ErrReset) {
		t.Fatalf("old flow into B after A restarted: Read = %v, want ErrReset", err)
	}
	oldOut.Write([]byte("anyone?")) // A2 answers the unknown session with a reset
	if err := readErrWithin(t, oldOut, time.Second); !errors.Is(err, ErrReset) {
		t.Fatalf("old flow from B after A restarted: Read = %v, want ErrReset", err)
	}
}

func TestTransportConcurrentStreams(t *testing.T) {
	for _, tc := range []struct {
		name  string
		loss  float64
		delay time.Duration
	}{
		{"clean", 0, 0},
		{"3% loss each way", 0.03, 2 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const flows, size = 32, 4 << 20
			sink := func(_ session.NodeID, _ OpenRequest, st *Stream) {
				// Hash what arrives until FIN, answer with the hash, then FIN.
				st.Accept()
				h := sha256.New()
				if _, err := io.Copy(h, st); err != nil {
					st.Reset()
					return
				}
				st.Write(h.Sum(nil))
				st.CloseWrite()
				io.Copy(io.Discard, st)
				st.Close()
			}
			n, a, b := pair(t, tc.loss, tc.delay, sink, sink)
			start := time.Now()
			var wg sync.WaitGroup
			for i := range flows {
				from, to := a, nodeB
				if i%2 == 1 { // half the flows go the other way
					from, to = b, nodeA
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := sendAndVerify(from, to, i, size); err != nil {
						t.Errorf("flow %d: %v", i, err)
					}
				}()
			}
			wg.Wait()
			d := time.Since(start)
			sa, sb := a.Stats(), b.Stats()
			t.Logf("%d flows x %d MiB in %v (%.0f Mbit/s total); queue overflow drops %d; A: %+v; B: %+v", flows, size>>20, d.Round(time.Millisecond),
				float64(flows*size*8)/d.Seconds()/1e6, n.overflow.Load(), sa, sb)
			if sa.PayloadSent != flows/2*size+flows/2*sha256.Size || sb.PayloadReceived != sa.PayloadSent {
				t.Errorf("payload counters A sent %d, B received %d", sa.PayloadSent, sb.PayloadReceived)
			}
			if tc.loss > 0 && sa.Retransmits == 0 {
				t.Error("no retransmissions counted on a lossy link")
			}
		})
	}
}

// sendAndVerify writes size pseudo-random bytes on a new flow, half-closes
// and checks the sha256 the far end returns.
func sendAndVerify(tr *Transport, dst session.NodeID, seed, size int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := tr.Open(ctx, dst, testReq)
	if err != nil {
		return err
	}
	defer st.Close()
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	buf := make([]byte, 64<<10)
	h := sha256.New()
	for sent := 0; sent < size; sent += len(buf) {
		for i := 0; i < len(buf); i += 8 {
			v := rng.Uint64()
			for j := range 8 {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		h.Write(buf)
		if _, err := st.Write(buf); err != nil {
			return fmt.Errorf("write at %d: %w", sent, err)
		}
	}
	if err := st.CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(st)
	if err != nil {
		return fmt.Errorf("read hash: %w", err)
	}
	if !bytes.Equal(got, h.Sum(nil)) {
		return fmt.Errorf("far end hashed %x, sent %x", got, h.Sum(nil))
	}
	return nil
}

func TestTransportNoGoroutineLeak(t *testing.T) {
	// Warm up first: pools and the fake network's goroutines.
	exercise := func() {
		// One channel per node: which accept callback hands its stream over
		// first is a race, and reading the wrong one would wait forever.
		gotA, gotB := make(chan *Stream, 2), make(chan *Stream, 2)
		n := newFakeNet(0, 0)
		a := n.add(t, nodeA, acceptInto(gotA), KCPConfig{})
		b := n.add(t, nodeB, acceptInto(gotB), KCPConfig{})
		s1 := openT(t, a, nodeB)
		s2 := openT(t, b, nodeA)
		r1, r2 := recvT(t, gotB), recvT(t, gotA)
		s1.Write([]byte("x"))
		readN(t, r1, 1)
		s1.CloseWrite() // leaves a FIN watcher running
		io.ReadAll(r1)
		_ = r2
		_ = s2 // left open: Close must reap them
		n.close()
	}
	exercise()
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()
	exercise()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, baseline %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTransportDeliverGarbage(t *testing.T) {
	_, a, _ := pair(t, 0, 0, nil, nil)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		seg := make([]byte, rng.IntN(80))
		for j := range seg {
			seg[j] = byte(rng.Uint32())
		}
		if len(seg) > 0 {
			seg[0] = byte(i % 5)
		}
		a.Deliver(session.NodeID(rng.Uint64()%4), seg)
	}
	if a.Stats().Malformed == 0 {
		t.Fatal("no garbage segment counted as malformed")
	}
}

func TestNewTransportOptions(t *testing.T) {
	send := func(session.NodeID, [][]byte, int) error { return nil }
	for _, o := range []TransportOptions{
		{MaxSegment: 1380},
		{Send: send, MaxSegment: 100},
		{Send: send, MaxSegment: 1380, KCP: KCPConfig{Window: -1}},
	} {
		if _, err := NewTransport(o); err == nil {
			t.Errorf("NewTransport(%+v) succeeded", o)
		}
	}
	tr, err := NewTransport(TransportOptions{Send: send, MaxSegment: 9000})
	if err != nil {
		t.Fatal(err)
	}
	if tr.mtu != kcpMaxPacket {
		t.Errorf("mtu for MaxSegment 9000 = %d, want %d", tr.mtu, kcpMaxPacket)
	}
	tr.Close()
	if _, err := tr.Open(context.Background(), nodeB, testReq); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Open after Close = %v, want net.ErrClosed", err)
	}
}

// BenchmarkTransportStream measures one flow's throughput on a clean fake
// link (no delay, no loss), for a few KCP windows.
func BenchmarkTransportStream(b *testing.B) {
	for _, w := range []int{256, 1024, 2048} {
		b.Run(fmt.Sprintf("window=%d", w), func(b *testing.B) { benchStream(b, KCPConfig{Window: w}) })
	}
}

func benchStream(b *testing.B, kc KCPConfig) {
	got := make(chan *Stream, 1)
	n := newFakeNet(0, 0)
	b.Cleanup(n.close)
	a := n.add(b, nodeA, nil, kc)
	n.add(b, nodeB, acceptInto(got), kc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := a.Open(ctx, nodeB, testReq)
	if err != nil {
		b.Fatal(err)
	}
	sb := <-got
	done := make(chan int64)
	go func() {
		n, _ := io.Copy(io.Discard, sb)
		done <- n
	}()
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := sa.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	sa.CloseWrite()
	if n := <-done; n != int64(b.N)*int64(len(buf)) {
		b.Fatalf("received %d bytes, sent %d", n, b.N*len(buf))
	}
	b.StopTimer()
	st := a.Stats()
	b.ReportMetric(float64(st.Retransmits)/float64(st.SegmentsSent), "retrans/seg")
}

// TestTransportMalformedFrame: a frame that breaks the framing resets the
// stream (the peer sees RST), and Read reports ErrMalformed.
func TestTransportMalformedFrame(t *testing.T) {
	got := make(chan *Stream, 1)
	_, a, b := pair(t, 0, 0, nil, acceptInto(got))
	sa := openT(t, a, nodeB)
	sb := recvT(t, got)
	_ = b
	sa.c.mu.Lock()
	sa.c.a.Send([]byte{9, 0, 0}) // unknown frame type
	sa.c.flushLocked()
	sa.c.unlockSend()
	if err := readErrWithin(t, sb, time.Second); !errors.Is(err, ErrMalformed) {
		t.Fatalf("B Read of a bad frame = %v, want ErrMalformed", err)
	}
	if err := readErrWithin(t, sa, time.Second); !errors.Is(err, ErrReset) {
		t.Fatalf("A Read after B reset on a bad frame = %v, want ErrReset", err)
	}
}

// TestAcceptRefusesForeignSource: the destination's accept refuses a flow whose source address the
// opening node does not own (Options.Owns), before it dials anything; the opener's Open fails with
// ErrRefused.
func TestAcceptRefusesForeignSource(t *testing.T) {
	type call struct {
		node session.NodeID
		src  netip.Addr
	}
	asked := make(chan call, 1)
	p := &Proxy{log: slog.New(slog.DiscardHandler), o: Options{
		AllowInput: func(netip.Addr) bool { return true },
		Owns: func(node session.NodeID, src netip.Addr) bool {
			asked <- call{node, src}
			return false
		},
	}}
	_, a, _ := pair(t, 0, 0, nil, p.accept)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := a.Open(ctx, nodeB, testReq)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("Open of a flow from a source node A does not own: %v, want ErrRefused", err)
	}
	if c := <-asked; c.node != nodeA || c.src != testReq.Src.Addr() {
		t.Fatalf("Owns asked about %v from node %v, want %v from node %v", c.src, c.node, testReq.Src.Addr(), nodeA)
	}
	if got := p.refused.Load(); got != 1 {
		t.Fatalf("refused counter %d, want 1", got)
	}
}

// TestTransportFlowsPerPeer: a node takes at most MaxFlowsPerPeer conversations from one peer; the
// next one from it is refused at once, while another peer still gets in, and a closed flow frees its
// place.
func TestTransportFlowsPerPeer(t *testing.T) {
	n := newFakeNet(0, 0)
	t.Cleanup(n.close)
	got := make(chan *Stream, 16)
	n.addOpts(t, TransportOptions{Self: nodeB, MaxSegment: 1380, Accept: acceptInto(got), MaxFlowsPerPeer: 2})
	a := n.add(t, nodeA, nil, KCPConfig{})
	c := n.add(t, nodeC, nil, KCPConfig{})
	first := openT(t, a, nodeB)
	openT(t, a, nodeB)
	recvT(t, got)
	recvT(t, got)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if st, err := a.Open(ctx, nodeB, testReq); err == nil || ctx.Err() != nil {
		t.Fatalf("a third flow from one peer: %v, %v; want a refusal before the deadline", st, err)
	}
	t.Logf("third flow from one peer refused after %v", time.Since(start).Round(time.Millisecond))
	openT(t, c, nodeB) // another peer is not affected
	recvT(t, got)
	first.Reset()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := a.Open(ctx, nodeB, testReq)
		cancel()
		if err == nil {
			st.Reset()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after one of its flows closed, the peer still cannot open another: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
