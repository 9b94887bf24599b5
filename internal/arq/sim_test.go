package arq

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math/rand/v2"
	"testing"
)

// link is a one-way in-memory network with a fake clock: fixed latency, seeded loss, duplication and
// reordering (extra random delay).
type link struct {
	rng                *rand.Rand
	loss, dup, reorder float64
	delay              uint32
	q                  []timedPkt
	sent, dropped      int
	cmds               map[byte]int // segments sent per command
	wask               []uint32     // times WASK segments were sent
}

type timedPkt struct {
	at uint32
	b  []byte
}

func newLink(seed uint64, loss, dup, reorder float64, delay uint32) *link {
	return &link{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), loss: loss, dup: dup,
		reorder: reorder, delay: delay, cmds: map[byte]int{}}
}

func (l *link) send(now uint32, p []byte) {
	l.sent++
	for b := p; len(b) >= HeaderLen; {
		n := int(binary.LittleEndian.Uint32(b[20:]))
		l.cmds[b[4]]++
		if b[4] == CmdWask {
			l.wask = append(l.wask, now)
		}
		b = b[HeaderLen+n:]
	}
	if l.rng.Float64() < l.loss {
		l.dropped++
		return
	}
	copies := 1
	if l.rng.Float64() < l.dup {
		copies = 2
	}
	for range copies {
		d := l.delay
		if l.rng.Float64() < l.reorder {
			d += uint32(l.rng.IntN(20))
		}
		l.push(timedPkt{now + d, bytes.Clone(p)})
	}
}

// due removes and returns the packets that have arrived by now, in arrival order.
func (l *link) due(now uint32) [][]byte {
	i := 0
	for i < len(l.q) && diff(now, l.q[i].at) >= 0 {
		i++
	}
	out := make([][]byte, i)
	for j := range out {
		out[j] = l.q[j].b
	}
	l.q = append(l.q[:0], l.q[i:]...)
	return out
}

// push inserts p keeping the queue sorted by arrival time (stable for equal times).
func (l *link) push(p timedPkt) {
	i := len(l.q)
	for i > 0 && diff(l.q[i-1].at, p.at) > 0 {
		i--
	}
	l.q = append(l.q, timedPkt{})
	copy(l.q[i+1:], l.q[i:])
	l.q[i] = p
}

// peer is one end of a simulated conversation.
type peer struct {
	c   *Conv
	out *link
}

// sim is two Convs connected by two links.
type sim struct {
	t      testing.TB
	now    uint32
	a, b   peer
	flushA int
	flushB int
}

func newSim(t testing.TB, cfg Config, ab, ba *link) *sim {
	s := &sim{t: t, now: 1000}
	s.a = peer{out: ab}
	s.b = peer{out: ba}
	s.a.c = New(7, cfg, func(p []byte) { s.check(p, cfg); ab.send(s.now, p) })
	s.b.c = New(7, cfg, func(p []byte) { s.check(p, cfg); ba.send(s.now, p) })
	return s
}

func (s *sim) check(p []byte, cfg Config) {
	if len(p) > cfg.withDefaults().MTU || len(p) < HeaderLen {
		s.t.Fatalf("packet of %d bytes", len(p))
	}
}

// tick advances the clock by 1 ms: delivers due packets, then flushes each side that needs it.
func (s *sim) tick() {
	s.now++
	for _, p := range s.a.out.due(s.now) {
		if err := s.b.c.Input(p, s.now); err != nil {
			s.t.Fatalf("b input: %v", err)
		}
	}
	for _, p := range s.b.out.due(s.now) {
		if err := s.a.c.Input(p, s.now); err != nil {
			s.t.Fatalf("a input: %v", err)
		}
	}
}

// service flushes c if it needs it or its deadline has come.
func (s *sim) service(c *Conv) bool {
	at, ok := c.Deadline()
	if c.NeedsFlush() || (ok && diff(s.now, at) >= 0) {
		c.Flush(s.now)
		return true
	}
	return false
}

// stream is a deterministic byte source (and its checker) for transfers.
type stream struct {
	rng  *rand.Rand
	h    hash.Hash
	n    int
	buf  []byte
	next byte
}

func newStream() *stream { return &stream{h: sha256.New(), buf: make([]byte, 64<<10)} }

// fill returns the next k bytes of the pattern and hashes them.
func (st *stream) fill(k int) []byte {
	b := st.buf[:k]
	for i := range b {
		b[i] = st.next
		st.next = st.next*31 + 7
	}
	st.h.Write(b)
	st.n += k
	return b
}

// transfer sends total bytes from a to b through the sim, reading on b when read(now) says so, and
// returns the sim time it took. check runs every tick.
func (s *sim) transfer(total int, read func() bool, check func()) uint32 {
	src, dst := newStream(), sha256.New()
	var got int
	rbuf := make([]byte, 50000)
	start := s.now
	var chunk uint32
	for got < total {
		s.tick()
		for src.n < total && s.a.c.Pending() < 2*s.a.c.cfg.SendWindow {
			chunk = chunk*1103515245 + 12345
			k := min(total-src.n, 1+int(chunk>>16)%20000)
			s.a.c.Send(src.fill(k))
		}
		if read == nil || read() {
			for s.b.c.Readable() > 0 {
				n := s.b.c.Recv(rbuf[:1+int(chunk>>8)%len(rbuf)])
				dst.Write(rbuf[:n])
				got += n
			}
		}
		s.service(s.a.c)
		s.service(s.b.c)
		if check != nil {
			check()
		}
		if s.now-start > 600_000 {
			s.t.Fatalf("transfer stuck: %d of %d bytes after %d ms; a %+v b %+v", got, total, s.now-start,
				s.a.c.Stats(), s.b.c.Stats())
		}
	}
	if got != total || !bytes.Equal(src.h.Sum(nil), dst.Sum(nil)) {
		s.t.Fatalf("received %d bytes of %d, hash mismatch", got, total)
	}
	return s.now - start
}

// settle runs the sim until neither side has a timer pending, at most limit ms.
func (s *sim) settle(limit uint32) bool {
	for range limit {
		_, okA := s.a.c.Deadline()
		_, okB := s.b.c.Deadline()
		if !okA && !okB && len(s.a.out.q) == 0 && len(s.b.out.q) == 0 {
			return true
		}
		s.tick()
		s.service(s.a.c)
		s.service(s.b.c)
	}
	return false
}
