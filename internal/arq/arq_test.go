package arq

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestTransferLossy(t *testing.T) {
	const total = 8 << 20
	for _, tc := range []struct {
		name               string
		loss, dup, reorder float64
	}{
		{"clean", 0, 0, 0},
		{"loss5", 0.05, 0, 0},
		{"loss20", 0.20, 0, 0},
		{"reorder", 0, 0, 0.3},
		{"duplicate", 0, 0.2, 0},
		{"all", 0.05, 0.05, 0.2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ab := newLink(1, tc.loss, tc.dup, tc.reorder, 5)
			ba := newLink(2, tc.loss, tc.dup, tc.reorder, 5)
			s := newSim(t, Config{}, ab, ba)
			took := s.transfer(total, nil, nil)
			st := s.a.c.Stats()
			t.Logf("%d ms, sender %+v, receiver %+v", took, st, s.b.c.Stats())
			if tc.loss > 0 && st.Retransmits == 0 {
				t.Fatal("no retransmissions with loss")
			}
			if !s.settle(30_000) {
				t.Fatal("did not settle")
			}
			assertIdle(t, s.a.c)
			assertIdle(t, s.b.c)
		})
	}
}

// assertIdle checks that c needs no scheduling and holds no buffers.
func assertIdle(t *testing.T, c *Conv) {
	t.Helper()
	if at, ok := c.Deadline(); ok {
		t.Fatalf("idle conversation has deadline %d (now %d)", at, c.lastNow)
	}
	if c.NeedsFlush() || c.Pending() != 0 || c.Readable() != 0 {
		t.Fatalf("idle conversation: needs flush %v, pending %d, readable %d", c.NeedsFlush(), c.Pending(), c.Readable())
	}
	if c.queue.s != nil || c.flight.s != nil || c.rcvQueue.s != nil || c.ooo != nil || len(c.acks) != 0 || c.pkt != nil {
		t.Fatal("idle conversation holds buffers")
	}
}

func TestIdleAfterTransfer(t *testing.T) {
	s := newSim(t, Config{}, newLink(3, 0, 0, 0, 2), newLink(4, 0, 0, 0, 2))
	s.transfer(100_000, nil, nil)
	if !s.settle(1000) {
		t.Fatal("did not settle within 1 s")
	}
	assertIdle(t, s.a.c)
	assertIdle(t, s.b.c)
	// A small exchange afterwards works and settles again.
	s.transfer(10, nil, nil)
	if !s.settle(1000) {
		t.Fatal("did not settle again")
	}
	assertIdle(t, s.a.c)
	assertIdle(t, s.b.c)
}

func TestFlowControl(t *testing.T) {
	const (
		total  = 10 << 20
		window = 64
		stall  = 3000 // ms the reader does not read
	)
	cfg := Config{SendWindow: window, RecvWindow: window}
	ab, ba := newLink(5, 0.02, 0, 0.1, 5), newLink(6, 0.02, 0, 0.1, 5)
	s := newSim(t, cfg, ab, ba)
	mss := s.a.c.MSS()
	var stallStart, drainAt, resumed uint32
	var sndAtDrain uint32
	t0 := s.now
	read := func() bool {
		if stallStart == 0 && s.now-t0 >= 200 {
			stallStart = s.now
		}
		if stallStart != 0 && drainAt == 0 {
			if s.now-stallStart < stall {
				return false
			}
			drainAt, sndAtDrain = s.now, s.a.c.sndNxt
		}
		return true
	}
	check := func() {
		if n := s.b.c.buffered(); n > 2*window {
			t.Fatalf("receiver buffers %d segments", n)
		}
		if r := s.b.c.Readable(); r > window*mss {
			t.Fatalf("receiver has %d readable bytes", r)
		}
		if fl := s.a.c.sndNxt - s.a.c.sndUna; fl > window {
			t.Fatalf("%d segments in flight", fl)
		}
		if drainAt != 0 && resumed == 0 && s.a.c.sndNxt != sndAtDrain {
			resumed = s.now
		}
	}
	s.transfer(total, read, check)
	if stallStart == 0 || drainAt == 0 {
		t.Fatal("the reader never stalled")
	}
	// The sender stopped (zero window) and probed with backoff.
	var probes []uint32
	for _, at := range ab.wask {
		if at > stallStart && at < drainAt {
			probes = append(probes, at)
		}
	}
	t.Logf("probes during the stall at %v (stall from %d), resumed %d ms after the drain", probes, stallStart, resumed-drainAt)
	if len(probes) < 3 || len(probes) > 15 {
		t.Fatalf("%d probes in a %d ms stall", len(probes), stall)
	}
	for i := 2; i < len(probes); i++ {
		if g0, g1 := probes[i-1]-probes[i-2], probes[i]-probes[i-1]; g1+2 < g0 {
			t.Fatalf("probe interval shrank: %v", probes)
		}
	}
	// The window update went out at once: the sender resumed within about one round trip.
	if resumed == 0 || resumed-drainAt > 40 {
		t.Fatalf("sender resumed %d ms after the reader drained", resumed-drainAt)
	}
	if !s.settle(30_000) {
		t.Fatal("did not settle")
	}
}

func TestSmallWindowReopens(t *testing.T) {
	for _, w := range []int{1, 2, 3, 5} {
		cfg := Config{SendWindow: w, RecvWindow: w}
		s := newSim(t, cfg, newLink(7, 0, 0, 0, 3), newLink(8, 0, 0, 0, 3))
		n := 0
		s.transfer(200_000, func() bool { n++; return n%50 == 0 }, nil) // a slow reader
	}
}

func TestDeadLink(t *testing.T) {
	cfg := Config{DeadLink: 10, MaxRTO: 2000}
	s := newSim(t, cfg, newLink(9, 1, 0, 0, 5), newLink(10, 1, 0, 0, 5))
	s.a.c.Send(make([]byte, 10_000))
	start := s.now
	for !s.a.c.Dead() {
		s.tick()
		s.service(s.a.c)
		at, ok := s.a.c.Deadline()
		if !ok {
			t.Fatal("no deadline with data in flight")
		}
		if d := diff(at, s.now); d > 2000 {
			t.Fatalf("deadline %d ms ahead", d)
		}
		if s.now-start > 60_000 {
			t.Fatal("not dead after 60 s")
		}
	}
	st := s.a.c.Stats()
	t.Logf("dead after %d ms, %+v", s.now-start, st)
	if st.SegmentsSent < 10*8 {
		t.Fatalf("only %d segments sent", st.SegmentsSent)
	}
}

// seg builds one segment.
func rawSeg(conv uint32, cmd byte, frg byte, wnd uint16, ts, sn, una uint32, data []byte) []byte {
	b := make([]byte, HeaderLen, HeaderLen+len(data))
	binary.LittleEndian.PutUint32(b, conv)
	b[4], b[5] = cmd, frg
	binary.LittleEndian.PutUint16(b[6:], wnd)
	binary.LittleEndian.PutUint32(b[8:], ts)
	binary.LittleEndian.PutUint32(b[12:], sn)
	binary.LittleEndian.PutUint32(b[16:], una)
	binary.LittleEndian.PutUint32(b[20:], uint32(len(data)))
	return append(b, data...)
}

func cat(p ...[]byte) []byte {
	var b []byte
	for _, x := range p {
		b = append(b, x...)
	}
	return b
}

func TestMalformed(t *testing.T) {
	good := rawSeg(7, CmdPush, 0, 100, 1, 0, 0, []byte("hello"))
	badLen := rawSeg(7, CmdPush, 0, 100, 1, 1, 0, []byte("world"))
	binary.LittleEndian.PutUint32(badLen[20:], 6)
	for _, tc := range []struct {
		name     string
		pkt      []byte
		readable int // bytes received before the bad segment
	}{
		{"empty", nil, 0},
		{"short header", good[:HeaderLen-1], 0},
		{"len beyond packet", badLen, 0},
		{"huge len", func() []byte { b := rawSeg(7, CmdPush, 0, 1, 1, 0, 0, nil); b[23] = 0xff; return b }(), 0},
		{"unknown cmd", rawSeg(7, 99, 0, 1, 1, 0, 0, nil), 0},
		{"wrong conv", rawSeg(8, CmdPush, 0, 1, 1, 0, 0, []byte("x")), 0},
		{"fragment", rawSeg(7, CmdPush, 3, 1, 1, 0, 0, []byte("x")), 0},
		{"oversized push", rawSeg(7, CmdPush, 0, 1, 1, 0, 0, make([]byte, 1400)), 0},
		{"good then trailing bytes", cat(good, []byte{1, 2, 3}), 5},
		{"good then wrong conv", cat(good, rawSeg(9, CmdAck, 0, 1, 1, 0, 0, nil)), 5},
		{"good then unknown cmd", cat(good, rawSeg(7, 80, 0, 1, 1, 1, 0, []byte("zz"))), 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(7, Config{}, func([]byte) {})
			defer c.Release()
			err := c.Input(tc.pkt, 5)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v", err)
			}
			if c.Readable() != tc.readable || c.buffered() != min(tc.readable, 1) {
				t.Fatalf("readable %d, buffered %d", c.Readable(), c.buffered())
			}
			if tc.readable == 0 && (c.NeedsFlush() || c.rmtWnd != uint32(c.cfg.RecvWindow)) {
				t.Fatal("state changed by a bad segment")
			}
		})
	}
	c := New(7, Config{}, func([]byte) {})
	if err := c.Input(cat(good, rawSeg(7, CmdWask, 0, 1, 1, 0, 0, nil)), 5); err != nil {
		t.Fatalf("valid packet: %v", err)
	}
	if c.Readable() != 5 || !c.askTell {
		t.Fatal("valid packet not processed")
	}
}

func TestSendPacking(t *testing.T) {
	var pkts [][]byte
	c := New(1, Config{MTU: 100}, func(p []byte) { pkts = append(pkts, append([]byte(nil), p...)) })
	c.Send([]byte("ab"))
	c.Send([]byte("cd")) // fills the partial segment
	if c.Pending() != 1 {
		t.Fatalf("pending %d", c.Pending())
	}
	c.Send(make([]byte, 200)) // 72 more in the first, then 76+52
	if c.Pending() != 3 {
		t.Fatalf("pending %d", c.Pending())
	}
	c.Flush(0)
	if len(pkts) != 3 {
		t.Fatalf("%d packets", len(pkts))
	}
	for i, p := range pkts {
		if binary.LittleEndian.Uint32(p[12:]) != uint32(i) || p[5] != 0 {
			t.Fatalf("packet %d: sn %d frg %d", i, binary.LittleEndian.Uint32(p[12:]), p[5])
		}
	}
	// ACKs of several segments pack into one packet.
	r := New(1, Config{MTU: 100}, func(p []byte) { pkts = append(pkts, append([]byte(nil), p...)) })
	for _, p := range pkts[:3] {
		if err := r.Input(p, 1); err != nil {
			t.Fatal(err)
		}
	}
	pkts = pkts[:0]
	r.Flush(2)
	if len(pkts) != 1 || len(pkts[0]) != 3*HeaderLen {
		t.Fatalf("acks: %d packets", len(pkts))
	}
	if err := c.Input(pkts[0], 12); err != nil {
		t.Fatal(err)
	}
	if c.Pending() != 0 || c.srtt != 12 {
		t.Fatalf("pending %d after acks, srtt %d", c.Pending(), c.srtt)
	}
	if _, ok := c.Deadline(); ok {
		t.Fatal("deadline after everything was acknowledged")
	}
}

func TestFastResend(t *testing.T) {
	var pkts [][]byte
	c := New(1, Config{MTU: 100, MinRTO: 1000}, func(p []byte) { pkts = append(pkts, append([]byte(nil), p...)) })
	c.Send(make([]byte, 76*5))
	c.Flush(0)
	// Segment 0 is lost; 1..4 are acknowledged in separate packets.
	for sn := uint32(1); sn <= 2; sn++ {
		if err := c.Input(rawSeg(1, CmdAck, 0, 100, 0, sn, 0, nil), 5); err != nil {
			t.Fatal(err)
		}
	}
	if !c.NeedsFlush() {
		t.Fatal("fast resend not due after 2 skipping ACKs")
	}
	if at, ok := c.Deadline(); !ok || at != 5 {
		t.Fatalf("deadline %d %v", at, ok)
	}
	pkts = pkts[:0]
	c.Flush(6)
	if len(pkts) != 1 || binary.LittleEndian.Uint32(pkts[0][12:]) != 0 || c.Stats().FastRetransmits != 1 {
		t.Fatalf("fast resend: %d packets, %+v", len(pkts), c.Stats())
	}
	// More skipping ACKs do not resend it again before its RTO.
	for sn := uint32(3); sn <= 4; sn++ {
		c.Input(rawSeg(1, CmdAck, 0, 100, 0, sn, 0, nil), 7)
	}
	if c.NeedsFlush() {
		t.Fatal("second fast resend before the RTO")
	}
	c.Input(rawSeg(1, CmdAck, 0, 100, 6, 0, 0, nil), 8)
	if c.Pending() != 0 {
		t.Fatalf("pending %d", c.Pending())
	}
}

func TestIdleSize(t *testing.T) {
	t.Logf("Conv struct: %d bytes", sizeofConv)
}

// TestSteadyStateAllocs checks that Send+Flush+Input+Recv in steady state does not allocate.
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	p := newPair(Config{})
	chunk := make([]byte, 8*p.a.MSS())
	for range 100 {
		p.round(chunk)
	}
	allocs := testing.AllocsPerRun(1000, func() { p.round(chunk) })
	if allocs != 0 {
		t.Fatalf("%.1f allocations per round", allocs)
	}
}
