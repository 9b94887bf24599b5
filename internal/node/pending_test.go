package node

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/session"
)

// TestHandshakeUnderLoadNeedsCookie: a responder under load (here: always) answers a first message
// without a valid cookie with a cookie reply only; the initiator sends it again with the cookie and
// the session comes up, with one cookie round trip counted on the responder.
func TestHandshakeUnderLoadNeedsCookie(t *testing.T) {
	b := startTestNode(t, "10.6.0.2", Timers{})
	b.n.hs.mu.Lock()
	b.n.hs.loadAt = 0 // every message 1 needs a cookie
	b.n.hs.mu.Unlock()
	a := startTestNode(t, "10.6.0.1", Timers{}, b.port)
	start := time.Now()
	waitSession(t, a, b, "10.6.0.1", "10.6.0.2")
	if got := dropsOf(b.n, "handshake_cookie"); got < 1 {
		t.Fatalf("b sent no cookie reply (handshake_cookie %d)", got)
	}
	if got := dropsOf(a.n, "cookie_invalid"); got != 0 {
		t.Fatalf("a refused %d of b's cookie replies", got)
	}
	t.Logf("session through a cookie round trip in %v", time.Since(start).Round(time.Millisecond))
}

// TestRekeyDuringFlood: while 1,000 loopback ports send data packets for unknown sessions (the flood of
// issue 10, 1,500 to 3,000 a second) to a, the session b holds with a keeps rekeying every 300 ms and
// carrying packets: the flood's limits never take a place the real handshakes need.
func TestRekeyDuringFlood(t *testing.T) {
	timers := Timers{RekeyAfter: 300 * time.Millisecond, RejectAfter: 5 * time.Second}
	a := startTestNode(t, "10.7.0.1", timers)
	b := startTestNode(t, "10.7.0.2", timers, a.port)
	waitSession(t, b, a, "10.7.0.2", "10.7.0.1")
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(a.port)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	socks := make([]*net.UDPConn, 1000)
	for i := range socks {
		c, err := net.DialUDP("udp4", nil, dst)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		socks[i] = c
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		pkt := make([]byte, session.DataHeaderLen+session.TagLen+16)
		pkt[0] = session.TypeData
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			binary.BigEndian.PutUint32(pkt[4:8], uint32(i)*2654435761+1)
			socks[i%len(socks)].Write(pkt)
			if i%3 == 2 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	before := b.n.peerTab.live(a.n.self).handshakes.Load()
	delivered := 0
	for i := 0; i < 200; i++ {
		b.dev.Inject(udpPacket("10.7.0.2", "10.7.0.1", []byte{byte(i)}))
		select {
		case <-a.dev.Written():
			delivered++
		case <-time.After(200 * time.Millisecond):
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	rekeys := b.n.peerTab.live(a.n.self).handshakes.Load() - before
	t.Logf("during the flood: %d rekeys, %d of 200 packets delivered, a's unknown_session drops %d", rekeys, delivered, dropsOf(a.n, "unknown_session"))
	if rekeys < 3 {
		t.Errorf("only %d rekeys in about 4 s with RekeyAfter 300 ms during the flood, want at least 3", rekeys)
	}
	if delivered < 190 {
		t.Errorf("%d of 200 packets crossed the rekeying session during the flood", delivered)
	}
	if dropsOf(a.n, "unknown_session") < 1000 {
		t.Error("the flood did not reach a")
	}
}
