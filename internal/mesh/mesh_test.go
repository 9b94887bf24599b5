package mesh

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/session"
)

func ann(id session.NodeID, ip string, nbrs ...Neighbor) Announce {
	return Announce{Origin: id, Seq: 1, Hostname: "n" + id.String()[15:], IPv4: netip.MustParsePrefix(ip), ProxyIn: true, Neighbors: nbrs}
}

func nb(id session.NodeID, cost uint32) Neighbor { return Neighbor{ID: id, CostUS: cost} }

// signer returns a fresh node signing key.
func signer(t testing.TB) *session.Signer {
	t.Helper()
	id, err := session.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id.Signer()
}

func TestAnnounceRoundTrip(t *testing.T) {
	s := signer(t)
	a := Announce{
		Origin: s.NodeID(), Seq: 99, Hostname: "alpha", IPv4: netip.MustParsePrefix("10.144.144.1/24"),
		ProxyIn:   true,
		Subnets:   []Subnet{{Prefix: netip.MustParsePrefix("192.168.50.0/24"), Proxy: false}, {Prefix: netip.MustParsePrefix("10.9.0.0/16"), Proxy: true}},
		Neighbors: []Neighbor{{ID: 7, CostUS: 1500}, {ID: 9, CostUS: 20000}},
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.168.1.20:11010"), netip.MustParseAddrPort("203.0.113.9:40123")},
	}
	if err := a.Sign(s); err != nil {
		t.Fatal(err)
	}
	b := a.Wire()
	got, err := DecodeAnnounce(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, a) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, a)
	}
	for i := range b {
		if _, err := DecodeAnnounce(b[:i]); !errors.Is(err, ErrMalformedAnnounce) {
			t.Fatalf("truncated to %d bytes: err = %v, want ErrMalformedAnnounce", i, err)
		}
	}
	if _, err := DecodeAnnounce(append(bytes.Clone(b), 0)); !errors.Is(err, ErrMalformedAnnounce) {
		t.Fatalf("trailing byte accepted: %v", err)
	}
}

// TestAnnounceForged: what a hostile member can do with another node's Announce, and none of it
// passes: alter any byte (a higher sequence number, other neighbours, another address), re-sign it with
// its own key (the key does not hash to the origin), or sign for an origin it does not own.
func TestAnnounceForged(t *testing.T) {
	victim, attacker := signer(t), signer(t)
	a := ann(victim.NodeID(), "10.144.144.1/24", nb(2, 100))
	if err := a.Sign(victim); err != nil {
		t.Fatal(err)
	}
	b := a.Wire()
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 0x40
		if _, err := DecodeAnnounce(bad); err == nil {
			t.Fatalf("an announce with byte %d altered was accepted", i)
		}
	}
	// Bytes 1..8 are the origin, 9..16 the sequence number: both altered give a forged announce.
	for _, i := range []int{3, 12} {
		bad := bytes.Clone(b)
		bad[i] ^= 1
		if _, err := DecodeAnnounce(bad); !errors.Is(err, ErrForgedAnnounce) {
			t.Fatalf("byte %d altered: err = %v, want ErrForgedAnnounce", i, err)
		}
	}
	// The attacker re-signs the victim's announce (higher sequence number) with its own key.
	f := a
	f.Seq = 1 << 62
	f.SigningKey = attacker.Public()
	body, err := f.appendBody(nil)
	if err != nil {
		t.Fatal(err)
	}
	body = append(body, f.SigningKey[:]...)
	sig := attacker.Sign(body)
	if _, err := DecodeAnnounce(append(body, sig[:]...)); !errors.Is(err, ErrForgedAnnounce) {
		t.Fatalf("announce re-signed by another node: err = %v, want ErrForgedAnnounce", err)
	}
	if err := f.Sign(attacker); err == nil {
		t.Fatal("Sign accepted a key of another node than the origin")
	}
}

func FuzzDecodeAnnounce(f *testing.F) {
	s := signer(f)
	a := ann(s.NodeID(), "10.144.144.1/24", nb(2, 100))
	a.Subnets = []Subnet{{Prefix: netip.MustParsePrefix("192.168.1.0/24")}}
	if err := a.Sign(s); err != nil {
		f.Fatal(err)
	}
	f.Add(a.Wire())
	f.Add([]byte{2})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeAnnounce(data)
		if err != nil {
			return
		}
		// Whatever verifies keeps its exact bytes, which verify again.
		if !bytes.Equal(a.Wire(), data) {
			t.Fatal("Wire() differs from the bytes decoded")
		}
		if _, err := DecodeAnnounce(a.Wire()); err != nil {
			t.Fatalf("accepted announce does not decode again: %v", err)
		}
	})
}

func TestDBSequence(t *testing.T) {
	db := NewDB(1)
	now := time.Now()
	a := ann(2, "10.0.0.2/24")
	a.Seq = 5
	if ok, _ := db.Update(a, now); !ok {
		t.Fatal("first announce not stored")
	}
	a.Seq = 4
	if ok, _ := db.Update(a, now); ok {
		t.Fatal("older announce replaced a newer one")
	}
	a.Seq = 5
	if ok, _ := db.Update(a, now); ok {
		t.Fatal("same sequence stored twice (would flood forever)")
	}
	db.SetSelf(ann(1, "10.0.0.1/24"), now)
	if !db.Expire(now.Add(MaxAge + time.Second)) {
		t.Fatal("stale announce not expired")
	}
	if _, ok := db.Get(2); ok {
		t.Fatal("expired announce still there")
	}
	if _, ok := db.Get(1); !ok {
		t.Fatal("own announce expired")
	}
}

// A - B - C in a line, plus D linked to A and C with a higher cost.
func TestShortestPaths(t *testing.T) {
	const A, B, C, D = 1, 2, 3, 4
	anns := []Announce{
		ann(A, "10.0.0.1/24", nb(B, 1000), nb(D, 5000)),
		ann(B, "10.0.0.2/24", nb(A, 1000), nb(C, 1000)),
		ann(C, "10.0.0.3/24", nb(B, 1000), nb(D, 5000)),
		ann(D, "10.0.0.4/24", nb(A, 5000), nb(C, 5000)),
	}
	tab := Compute(A, anns)
	c, ok := tab.Node(C)
	if !ok || c.NextHop != B || c.Hops != 2 || c.CostUS != 2000 {
		t.Fatalf("C: %+v ok=%v, want via B, 2 hops, cost 2000", c, ok)
	}
	r, ok := tab.Lookup(netip.MustParseAddr("10.0.0.3"))
	if !ok || r.Node != C {
		t.Fatalf("lookup 10.0.0.3 = %+v %v", r, ok)
	}
	if _, ok := tab.Lookup(netip.MustParseAddr("10.0.0.1")); ok {
		t.Fatal("own address routed to a remote node")
	}
	// B dies: A and C drop it from their neighbours; the path moves to D.
	anns[0].Neighbors = []Neighbor{nb(D, 5000)}
	anns[2].Neighbors = []Neighbor{nb(D, 5000)}
	tab = Compute(A, anns)
	if c, _ := tab.Node(C); c.NextHop != D || c.Hops != 2 {
		t.Fatalf("after B died, C = %+v, want via D", c)
	}
	if _, ok := tab.Node(B); ok {
		t.Fatal("B still reachable although nobody links to it")
	}
}

// A link only one end announces is not used (two-way check).
func TestOneWayLinkIgnored(t *testing.T) {
	anns := []Announce{ann(1, "10.0.0.1/24", nb(2, 10)), ann(2, "10.0.0.2/24")}
	if _, ok := Compute(1, anns).Node(2); ok {
		t.Fatal("one-way link used")
	}
}

func TestDuplicateIPAndSubnets(t *testing.T) {
	const A, B, C = 1, 2, 3
	anns := []Announce{
		ann(A, "10.0.0.1/24", nb(B, 1000), nb(C, 1000)),
		ann(B, "10.0.0.9/24", nb(A, 1000)),
		ann(C, "10.0.0.9/24", nb(A, 1000)),
	}
	anns[1].Subnets = []Subnet{{Prefix: netip.MustParsePrefix("192.168.0.0/16")}}
	anns[2].Subnets = []Subnet{{Prefix: netip.MustParsePrefix("192.168.50.0/24"), Proxy: true}}
	tab := Compute(A, anns)
	r, _ := tab.Lookup(netip.MustParseAddr("10.0.0.9"))
	if r.Node != B {
		t.Fatalf("duplicate IP went to %v, want the lowest node ID %v", r.Node, B)
	}
	if r, _ := tab.Lookup(netip.MustParseAddr("192.168.50.7")); r.Node != C || !r.Proxy {
		t.Fatalf("most specific subnet: %+v", r)
	}
	if r, _ := tab.Lookup(netip.MustParseAddr("192.168.7.7")); r.Node != B {
		t.Fatalf("covering subnet: %+v", r)
	}
	var texts []string
	for _, c := range tab.Conflicts() {
		texts = append(texts, c.Text)
	}
	all := strings.Join(texts, "\n")
	if !strings.Contains(all, "duplicate virtual IP 10.0.0.9") || !strings.Contains(all, "overlaps") {
		t.Fatalf("conflict warnings missing:\n%s", all)
	}
}

func BenchmarkLookup(b *testing.B) {
	var anns []Announce
	self := ann(1, "10.0.0.1/16")
	for i := 2; i < 200; i++ {
		id := session.NodeID(i)
		self.Neighbors = append(self.Neighbors, nb(id, 1000))
		a := ann(id, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String()+"/16", nb(1, 1000))
		a.Subnets = []Subnet{{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(i), 0}), 24)}}
		anns = append(anns, a)
	}
	tab := Compute(1, append(anns, self))
	dsts := []netip.Addr{netip.MustParseAddr("10.0.0.150"), netip.MustParseAddr("172.16.150.9")}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := tab.Lookup(dsts[i&1]); !ok {
			b.Fatal("miss")
		}
	}
}

func TestAnnounceEndpointLimits(t *testing.T) {
	s := signer(t)
	a := Announce{Origin: s.NodeID(), Seq: 1, IPv4: netip.MustParsePrefix("10.144.144.1/24")}
	for i := range MaxEndpoints + 1 {
		a.Endpoints = append(a.Endpoints, netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 11010))
	}
	if err := a.Sign(s); err == nil {
		t.Fatalf("signed an announce with %d endpoints (limit %d)", len(a.Endpoints), MaxEndpoints)
	}
	a.Endpoints = []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::1]:11010")}
	if err := a.Sign(s); err == nil {
		t.Fatal("signed an announce with an IPv6 endpoint")
	}
}
