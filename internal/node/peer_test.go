package node

import (
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/session"
)

// TestPongVerified: a round trip is measured only for a ping this node sent, once, on its own clock;
// the time a pong echoes (which a peer could set to look closer and pull routes through it) is ignored.
func TestPongVerified(t *testing.T) {
	n := &Node{peerTab: newPeerTable()}
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

// TestPruneForgetsDeadPeers: a peer dead for longer than forgetPeerAfter leaves the peer table, and the
// traffic counters (metric series) of a node that is neither routed nor a remembered peer go too; a
// live peer and its counters stay.
func TestPruneForgetsDeadPeers(t *testing.T) {
	a := startTestNode(t, "10.3.0.1", Timers{})
	b := startTestNode(t, "10.3.0.2", Timers{}, a.port)
	waitSession(t, a, b, "10.3.0.1", "10.3.0.2")
	now := time.Now()
	dead, stranger := session.NodeID(0xdead), session.NodeID(0x5747)
	p := &peer{id: dead}
	p.lastRecv.Store(now.Add(-forgetPeerAfter - time.Second).UnixNano())
	a.n.peerTab.add(p)
	a.n.trafficOf(dead).RxBytes.Add(1)
	a.n.trafficOf(stranger).RxBytes.Add(1)
	a.n.trafficOf(b.n.self).RxBytes.Add(1)

	a.n.prune(now)
	deadKept, liveKept := a.n.peerTab.get(dead) != nil, a.n.peerTab.get(b.n.self) != nil
	if deadKept || !liveKept {
		t.Fatalf("after prune: dead peer kept %v, live peer kept %v", deadKept, liveKept)
	}
	for id, want := range map[session.NodeID]bool{dead: false, stranger: false, b.n.self: true} {
		if _, ok := a.n.traffic.Load(id); ok != want {
			t.Errorf("traffic counters of %v kept: %v, want %v", id, ok, want)
		}
	}
}
