package node

import (
	"testing"
	"time"
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
