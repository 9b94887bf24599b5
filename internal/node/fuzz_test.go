package node

import (
	"testing"

	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/underlay"
)

// FuzzNodeReceive is a stateful fuzz of a node with a live session: node b, holding a session with a
// (and through it a route), gets each input twice, as a raw underlay packet from a's address and as an
// inner message sealed in a's session, so the fuzzer reaches every inner message parser (IP delivery,
// ping, pong, announcements, KCP, sealed envelopes, routed handshakes) past authentication. No input
// may panic, and the tables unauthenticated or member input can grow stay within their bounds.
func FuzzNodeReceive(f *testing.F) {
	b := startTestNode(f, "10.5.0.2", Timers{})
	a := startTestNode(f, "10.5.0.1", Timers{}, b.port)
	waitSession(f, a, b, "10.5.0.1", "10.5.0.2")
	go func() { // b's TUN must never block the receive path
		for range b.dev.Written() {
		}
	}()
	pa := b.n.livePeer(a.n.self)
	pb := a.n.livePeer(b.n.self)
	if pa == nil || pb == nil {
		f.Fatal("no session between a and b")
	}
	link := pa.sendLink()
	ip := udpPacket("10.5.0.1", "10.5.0.2", []byte("fuzz"))
	routedInit := append([]byte{msgRoutedHandshake, defaultTTL, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, 1, 0, 0, 0)
	putUint64(routedInit[2:], uint64(b.n.self))
	for _, seed := range [][]byte{
		append([]byte{msgIP, defaultTTL}, ip...),
		appendPing(nil, msgPing, 1, 1), appendPing(nil, msgPong, 1, 1),
		{msgAnnounce, 1, 2, 3},
		append([]byte{msgKCP, defaultTTL}, make([]byte, 16+24)...),
		append([]byte{msgSealed, defaultTTL, 1, 2, 3, 4, 5, 6, 7, 8}, make([]byte, 40)...),
		routedInit,
		{session.TypeData, 0, 0, 0, 1, 2, 3, 4},
		{msgObserved, 198, 51, 100, 7, 0x2b, 0x02},
		{msgProbeReq, 1, 2, 3, 4, 5, 6, 7, 8},
		{msgProbed, 1, 2, 3, 4, 5, 6, 7, 8, 198, 51, 100, 7, 0x2b, 0x02},
		{session.TypeProbe, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 60000 {
			return
		}
		raw := make([]byte, len(in), underlay.MaxPacket)
		copy(raw, in)
		b.n.plane.Receive([]underlay.Packet{{Data: raw, From: link}})
		if len(in) > 0 && in[0] != msgRefused { // a refusal legitimately ends the session
			kp := pb.cur.Load()
			if kp == nil {
				t.Fatal("an earlier input ended the session (only msgRefused may)")
			}
			buf := make([]byte, session.DataHeaderLen+len(in), underlay.MaxPacket)
			copy(buf[session.DataHeaderLen:], in)
			pkt, err := kp.SealInPlace(buf, len(in))
			if err != nil {
				t.Fatal(err)
			}
			b.n.plane.Receive([]underlay.Packet{{Data: pkt, From: link}})
		}
		if n := b.n.hs.len(); n > maxPending {
			t.Fatalf("%d handshakes in flight, over the cap of %d", n, maxPending)
		}
		if n := b.n.db.Len(); n > 4096 {
			t.Fatalf("%d announcement origins, over the cap", n)
		}
		b.n.e2e.mu.Lock()
		e2ePeers := len(b.n.e2e.peers)
		b.n.e2e.mu.Unlock()
		if e2ePeers > 1024 {
			t.Fatalf("%d end-to-end peers from fuzzed input", e2ePeers)
		}
		b.n.natMu.Lock()
		watched := len(b.n.probeWatch)
		b.n.natMu.Unlock()
		if watched > probePerPeer {
			t.Fatalf("%d probe tokens watched for one peer, over the cap of %d", watched, probePerPeer)
		}
	})
}
