package node

import (
	"testing"
	"time"
)

// TestPongVerified: a round trip is measured only for a ping this node sent, once, on its own clock;
// the time a pong echoes (which a peer could set to look closer and pull routes through it) is ignored.
func TestPongVerified(t *testing.T) {
	n := &Node{}
	p := &peer{}
	p.pingSeq = 7
	p.pingsSent[7%len(p.pingsSent)] = sentPing{seq: 7, at: time.Now().Add(-40 * time.Millisecond)}

	n.onPong(p, 8) // never sent
	if got := p.rttUS.Load(); got != 0 {
		t.Fatalf("a pong for a ping never sent set the RTT to %d us", got)
	}
	n.onPong(p, 3) // same slot as 7, another sequence number
	if got := p.rttUS.Load(); got != 0 {
		t.Fatalf("a pong for an old sequence number set the RTT to %d us", got)
	}
	n.onPong(p, 7)
	rtt := p.rttUS.Load()
	if rtt < 40_000 || rtt > 1_000_000 {
		t.Fatalf("RTT after the real pong: %d us, want about 40 ms", rtt)
	}
	// A replay of the same pong, later, does not count again.
	time.Sleep(20 * time.Millisecond)
	n.onPong(p, 7)
	if got := p.rttUS.Load(); got != rtt {
		t.Fatalf("a replayed pong moved the RTT from %d to %d us", rtt, got)
	}
}
