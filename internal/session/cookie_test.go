package session

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// TestCookieRoundTrip: a cookie reply opens only with the network key and the message 1 it answers;
// its cookie makes a mac2 the jar accepts for that source address only, through one rotation of the
// secret and not two.
func TestCookieRoundTrip(t *testing.T) {
	ini := testConfig(t, false)
	_, msg1, err := NewInitiator(ini, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	jar := NewCookieJar(testPSK)
	src := netip.MustParseAddrPort("192.0.2.10:40000")
	now := time.Unix(1_800_000_000, 0)
	reply := jar.Reply(msg1, src, now)
	if len(reply) != CookieReplyLen {
		t.Fatalf("reply is %d bytes, want %d", len(reply), CookieReplyLen)
	}
	if typ, ok := PacketType(reply); !ok || typ != TypeCookieReply {
		t.Fatalf("PacketType(reply) = %d, %v", typ, ok)
	}
	if idx, ok := ReceiverIndex(reply); !ok || idx != 7 {
		t.Fatalf("reply's receiver index %d, %v; want the initiator's 7", idx, ok)
	}
	if _, ok := OpenCookieReply([32]byte{9}, reply, msg1); ok {
		t.Fatal("a cookie reply opened without the network key")
	}
	other := bytes.Clone(msg1)
	other[len(other)-1] ^= 1
	if _, ok := OpenCookieReply(testPSK, reply, other); ok {
		t.Fatal("a cookie reply opened for another message 1")
	}
	cookie, ok := OpenCookieReply(testPSK, reply, msg1)
	if !ok {
		t.Fatal("the genuine cookie reply did not open")
	}
	wire := WithMAC2(msg1, &cookie)
	m1, mac2, ok := SplitMAC2(wire)
	if !ok || !bytes.Equal(m1, msg1) {
		t.Fatal("SplitMAC2 did not give back message 1")
	}
	if !jar.Valid(m1, mac2, src, now) {
		t.Fatal("the jar refused a mac2 made with its own cookie")
	}
	if jar.Valid(m1, mac2, netip.MustParseAddrPort("192.0.2.11:40000"), now) {
		t.Fatal("a cookie of one address was valid for another")
	}
	_, zero, _ := SplitMAC2(WithMAC2(msg1, nil))
	if jar.Valid(m1, zero, src, now) {
		t.Fatal("a zero mac2 was valid")
	}
	if !jar.Valid(m1, mac2, src, now.Add(CookieLifetime+time.Second)) {
		t.Fatal("a cookie was refused right after one rotation")
	}
	if jar.Valid(m1, mac2, src, now.Add(2*CookieLifetime+2*time.Second)) {
		t.Fatal("a cookie was still valid after two rotations")
	}
}
