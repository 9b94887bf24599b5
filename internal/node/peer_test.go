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

// TestProbeTokens: a peer can have at most probePerPeer tokens watched; a probe with a watched token is
// answered once, in that peer's session, with the probe's source; an unknown token gets nothing.
func TestProbeTokens(t *testing.T) {
	b := startTestNode(t, "10.6.0.2", Timers{})
	a := startTestNode(t, "10.6.0.1", Timers{}, b.port)
	waitSession(t, a, b, "10.6.0.1", "10.6.0.2")
	pa := b.n.livePeer(a.n.self)
	if pa == nil {
		t.Fatal("no session")
	}
	tok := func(i byte) []byte { return []byte{msgProbeReq, i, 2, 3, 4, 5, 6, 7, 8} }
	for i := range byte(10) {
		b.n.receiveProbeReq(pa, tok(i))
	}
	b.n.natMu.Lock()
	watched := len(b.n.probeWatch)
	b.n.natMu.Unlock()
	if watched != probePerPeer {
		t.Fatalf("%d tokens watched for one peer after 10 requests, want %d", watched, probePerPeer)
	}
	probe := func(i byte) []byte { return append([]byte{session.TypeProbe, 0, 0, 0}, tok(i)[1:]...) }
	before := dropsOf(b.n, "unknown_session")
	b.n.handleProbe(probe(9), pa.sendLink()) // never watched: the 5th and later requests were refused
	if dropsOf(b.n, "unknown_session") != before+1 {
		t.Error("a probe with an unwatched token was not dropped")
	}
	b.n.handleProbe(probe(0), pa.sendLink())
	b.n.handleProbe(probe(0), pa.sendLink()) // a replay: the token is used up
	if dropsOf(b.n, "unknown_session") != before+2 {
		t.Error("a replayed probe token was not dropped")
	}
	b.n.natMu.Lock()
	_, still := b.n.probeWatch[[8]byte(tok(0)[1:])]
	b.n.natMu.Unlock()
	if still {
		t.Error("an answered token is still watched")
	}
}
