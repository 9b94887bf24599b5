package arq

import (
	"testing"
	"unsafe"
)

const sizeofConv = unsafe.Sizeof(Conv{})

// wire holds the packets one side sent, in reused buffers.
type wire struct {
	bufs [][]byte
	n    int
}

func (w *wire) put(p []byte) {
	if w.n == len(w.bufs) {
		w.bufs = append(w.bufs, make([]byte, 0, 1500))
	}
	w.bufs[w.n] = append(w.bufs[w.n][:0], p...)
	w.n++
}

func (w *wire) deliver(c *Conv, now uint32) {
	for i := range w.n {
		if err := c.Input(w.bufs[i], now); err != nil {
			panic(err)
		}
	}
	w.n = 0
}

// pair is two Convs wired back to back in memory, with no loss.
type pair struct {
	a, b   *Conv
	ab, ba wire
	now    uint32
	rbuf   []byte
	got    int
}

func newPair(cfg Config) *pair {
	p := &pair{rbuf: make([]byte, 64<<10)}
	p.a = New(1, cfg, p.ab.put)
	p.b = New(1, cfg, p.ba.put)
	return p
}

// round sends chunk from a to b and reads it: one Flush on each side per round.
func (p *pair) round(chunk []byte) {
	p.now++
	if chunk != nil {
		p.a.Send(chunk)
	}
	p.a.Flush(p.now)
	p.ab.deliver(p.b, p.now)
	for p.b.Readable() > 0 {
		p.got += p.b.Recv(p.rbuf)
	}
	p.b.Flush(p.now)
	p.ba.deliver(p.a, p.now)
}

func BenchmarkTransfer64MiB(b *testing.B) {
	const total = 64 << 20
	chunk := make([]byte, 64<<10)
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		p := newPair(Config{})
		sent := 0
		for p.got < total {
			for sent < total && p.a.Pending() < p.a.cfg.SendWindow {
				k := min(len(chunk), total-sent)
				p.a.Send(chunk[:k])
				sent += k
			}
			p.round(nil)
		}
		p.a.Release()
		p.b.Release()
	}
}

// BenchmarkTransferLossy is a 16 MiB transfer through the simulated network with 5% loss.
func BenchmarkTransferLossy(b *testing.B) {
	const total = 16 << 20
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		s := newSim(b, Config{}, newLink(1, 0.05, 0, 0, 5), newLink(2, 0.05, 0, 0, 5))
		s.transfer(total, nil, nil)
	}
}

func BenchmarkSmallRoundTrip(b *testing.B) {
	p := newPair(Config{})
	msg := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		p.round(msg)
	}
}

// BenchmarkFlushLongFlight is a sender with a full 2048-segment flight on a long path (nothing acked,
// no timer due) that adds one segment per Flush: what every ACK batch costs on a 20 ms link. Flush
// looks only at the new segment unless a resend may be due.
func BenchmarkFlushLongFlight(b *testing.B) {
	c := New(1, Config{MTU: 1400, SendWindow: 4096, RecvWindow: 4096}, func([]byte) {})
	seg := make([]byte, c.MSS())
	for range 2048 {
		c.Send(seg)
	}
	c.Flush(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Send(seg)
		c.Flush(1) // far below every resend time (RTO >= 30 ms)
		if c.flight.len() > 3000 {
			b.StopTimer()
			c.ackUna(c.sndNxt - 2048) // keep the flight at ~2048
			b.StartTimer()
		}
	}
}
