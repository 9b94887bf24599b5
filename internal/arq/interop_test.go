package arq

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

// interop connects one of our Convs to kcp-go's bare KCP core in memory, both driven by real time
// (kcp-go's core reads its own clock), in one goroutine.
type interop struct {
	ours        *Conv
	theirs      *kcp.KCP
	toUs, toKCP [][]byte
	start       time.Time
	loss        float64 // drop probability of each packet, both ways
	rng         *rand.Rand
}

func newInterop(loss float64) *interop {
	x := &interop{start: time.Now(), loss: loss, rng: rand.New(rand.NewPCG(1, 2))}
	x.ours = New(42, Config{MTU: 1400, SendWindow: 1024, RecvWindow: 1024}, func(p []byte) {
		x.toKCP = append(x.toKCP, bytes.Clone(p))
	})
	x.theirs = kcp.NewKCP(42, func(buf []byte, size int) { x.toUs = append(x.toUs, bytes.Clone(buf[:size])) })
	x.theirs.NoDelay(1, 10, 2, 1)
	x.theirs.WndSize(1024, 1024)
	x.theirs.SetMtu(1400)
	return x
}

func (x *interop) now() uint32 { return uint32(time.Since(x.start).Milliseconds()) }

// step exchanges the queued packets and runs both sides' timers once.
func (x *interop) step(t *testing.T) {
	now := x.now()
	for _, p := range x.toUs {
		if x.rng.Float64() < x.loss {
			continue
		}
		if err := x.ours.Input(p, now); err != nil {
			t.Fatalf("our Input of kcp-go's packet: %v", err)
		}
	}
	x.toUs = x.toUs[:0]
	for _, p := range x.toKCP {
		if x.rng.Float64() < x.loss {
			continue
		}
		if r := x.theirs.Input(p, kcp.IKCP_PACKET_REGULAR, false); r != 0 {
			t.Fatalf("kcp-go Input of our packet: %d", r)
		}
	}
	x.toKCP = x.toKCP[:0]
	x.theirs.Update()
	if at, ok := x.ours.Deadline(); x.ours.NeedsFlush() || (ok && diff(now, at) >= 0) {
		x.ours.Flush(now)
	}
}

func TestInteropWeSend(t *testing.T) {
	for _, loss := range []float64{0, 0.05} {
		t.Run(fmt.Sprint("loss", loss), func(t *testing.T) { testInteropWeSend(t, loss) })
	}
}

func testInteropWeSend(t *testing.T, loss float64) {
	const total = 4 << 20
	x := newInterop(loss)
	src := newStream()
	dst := sha256.New()
	got := 0
	buf := make([]byte, 2000)
	deadline := time.Now().Add(20 * time.Second)
	for got < total {
		for src.n < total && x.ours.Pending() < 1024 {
			x.ours.Send(src.fill(min(total-src.n, 10_000)))
		}
		x.step(t)
		for {
			n := x.theirs.Recv(buf)
			if n < 0 {
				break
			}
			dst.Write(buf[:n])
			got += n
		}
		if time.Now().After(deadline) {
			t.Fatalf("stuck at %d of %d bytes", got, total)
		}
		time.Sleep(200 * time.Microsecond)
	}
	if got != total || !bytes.Equal(src.h.Sum(nil), dst.Sum(nil)) {
		t.Fatalf("kcp-go received %d of %d bytes, hash mismatch", got, total)
	}
	t.Logf("%v, our stats %+v", time.Since(x.start), x.ours.Stats())
	settleInterop(t, x)
}

func TestInteropWeReceive(t *testing.T) {
	for _, loss := range []float64{0, 0.05} {
		t.Run(fmt.Sprint("loss", loss), func(t *testing.T) { testInteropWeReceive(t, loss) })
	}
}

func testInteropWeReceive(t *testing.T, loss float64) {
	const total = 4 << 20
	x := newInterop(loss)
	mss := x.ours.MSS()
	src := newStream()
	dst := sha256.New()
	got := 0
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(20 * time.Second)
	for got < total {
		for src.n < total && x.theirs.WaitSnd() < 1024 {
			if r := x.theirs.Send(src.fill(min(total-src.n, mss))); r != 0 { // <= MSS: frg stays 0
				t.Fatalf("kcp-go Send: %d", r)
			}
		}
		x.step(t)
		for x.ours.Readable() > 0 {
			n := x.ours.Recv(buf)
			dst.Write(buf[:n])
			got += n
		}
		if x.ours.NeedsFlush() {
			x.ours.Flush(x.now())
		}
		if time.Now().After(deadline) {
			t.Fatalf("stuck at %d of %d bytes", got, total)
		}
		time.Sleep(200 * time.Microsecond)
	}
	if got != total || !bytes.Equal(src.h.Sum(nil), dst.Sum(nil)) {
		t.Fatalf("received %d of %d bytes from kcp-go, hash mismatch", got, total)
	}
	t.Logf("%v, our stats %+v", time.Since(x.start), x.ours.Stats())
	settleInterop(t, x)
}

// settleInterop waits until both sides have nothing in flight and our Conv is idle.
func settleInterop(t *testing.T, x *interop) {
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		x.step(t)
		if _, ok := x.ours.Deadline(); !ok && x.theirs.WaitSnd() == 0 && len(x.toUs) == 0 && len(x.toKCP) == 0 {
			assertIdle(t, x.ours)
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("interop did not settle")
}
