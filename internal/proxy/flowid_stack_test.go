package proxy

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// newTestStack returns a Stack with no TUN behind it.
func newTestStack(t testing.TB) *Stack {
	t.Helper()
	s, err := NewStack(StackOptions{MTU: 1420, Output: func([][]byte, int) {}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStackOptionsErrors(t *testing.T) {
	out := func([][]byte, int) {}
	for _, tc := range []struct {
		o    StackOptions
		want string
	}{
		{StackOptions{MTU: 0, Output: out}, "MTU 0 is out of range"},
		{StackOptions{MTU: 70000, Output: out}, "MTU 70000 is out of range"},
		{StackOptions{MTU: 1420}, "Output is nil"},
		{StackOptions{MTU: 1420, Output: out, TimeWait: -time.Second}, "TimeWait -1s is negative"},
	} {
		s, err := NewStack(tc.o)
		if err == nil {
			s.Close()
			t.Errorf("NewStack(%+v) succeeded, want an error with %q", tc.o, tc.want)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewStack(%+v) = %v, want an error with %q", tc.o, err, tc.want)
		}
	}
}

func TestStackFlowIDString(t *testing.T) {
	id := FlowID{Src: netip.MustParseAddrPort("10.144.144.2:41822"), Dst: netip.MustParseAddrPort("10.144.144.1:6379")}
	if got, want := id.String(), "10.144.144.2:41822 -> 10.144.144.1:6379"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if got := keyOf(id).id(); got != id {
		t.Fatalf("key round trip = %s, want %s", got, id)
	}
}

func TestStackOwns(t *testing.T) {
	s := newTestStack(t)
	cli, srv := netip.MustParseAddrPort("10.144.144.2:41822"), netip.MustParseAddrPort("10.144.144.1:6379")
	s.Claim(FlowID{Src: cli, Dst: srv})
	s.Claim(FlowID{Src: netip.MustParseAddrPort("[::1]:1"), Dst: srv}) // ignored: not IPv4

	udp := tcpPacket(cli, srv, tcpFlagACK)
	udp[9] = 17
	frag := tcpPacket(cli, srv, tcpFlagACK)
	frag[7] = 1 // fragment offset 8
	longIHL := tcpPacket(cli, srv, tcpFlagACK)
	longIHL[0] = 0x4f // IHL 60 > packet
	v6 := tcpPacket(cli, srv, tcpFlagACK)
	v6[0] = 0x65
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"client to server", tcpPacket(cli, srv, tcpFlagSYN), true},
		{"server to client", tcpPacket(srv, cli, tcpFlagSYN|tcpFlagACK), true},
		{"other client port", tcpPacket(netip.AddrPortFrom(cli.Addr(), 41823), srv, tcpFlagACK), false},
		{"other server", tcpPacket(cli, netip.MustParseAddrPort("10.144.144.3:6379"), tcpFlagACK), false},
		{"udp", udp, false},
		{"non-first fragment", frag, false},
		{"IHL beyond packet", longIHL, false},
		{"version 6", v6, false},
		{"truncated", tcpPacket(cli, srv, tcpFlagACK)[:33], false},
		{"empty", nil, false},
	} {
		if got := s.Owns(tc.pkt); got != tc.want {
			t.Errorf("%s: Owns = %v, want %v", tc.name, got, tc.want)
		}
	}
	if fl := s.Flows(); len(fl) != 1 || fl[0].State != "claimed" {
		t.Fatalf("Flows() = %+v, want one claimed flow", fl)
	}
	// A claim the forwarder never saw expires.
	if n := s.flows.reap(time.Now().Add(claimTTL+time.Second), claimTTL); n != 1 || s.Owns(tcpPacket(cli, srv, tcpFlagACK)) {
		t.Fatalf("reap removed %d, Owns after expiry = %v; want 1, false", n, s.Owns(tcpPacket(cli, srv, tcpFlagACK)))
	}
}

func TestStackOwnsAllocs(t *testing.T) {
	s := newTestStack(t)
	cli, srv := netip.MustParseAddrPort("10.144.144.2:41822"), netip.MustParseAddrPort("10.144.144.1:6379")
	s.Claim(FlowID{Src: cli, Dst: srv})
	hit, miss := tcpPacket(srv, cli, tcpFlagACK), tcpPacket(srv, netip.MustParseAddrPort("10.144.144.9:1"), tcpFlagACK)
	if n := testing.AllocsPerRun(100, func() { s.Owns(hit); s.Owns(miss) }); n != 0 {
		t.Fatalf("Owns allocates %v times per call pair, want 0", n)
	}
}

// TestStackInjectGarbage hands netstack garbage and unowned packets: nothing
// may panic, and netstack must answer nothing (no RST for unowned flows).
func TestStackInjectGarbage(t *testing.T) {
	emitted := make(chan []byte, 16)
	s, err := NewStack(StackOptions{MTU: 1420, Output: func(ps [][]byte, off int) {
		for _, p := range ps {
			select {
			case emitted <- append([]byte(nil), p[off:]...):
			default:
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(1, 2))
	cli, srv := netip.MustParseAddrPort("10.144.144.2:41822"), netip.MustParseAddrPort("10.144.144.1:6379")
	s.Claim(FlowID{Src: cli, Dst: srv})
	for i := range 20000 {
		p := tcpPacket(cli, srv, byte(r.Uint32()))
		if i%2 == 0 { // unowned flow
			p = tcpPacket(netip.AddrPortFrom(cli.Addr(), 1), srv, tcpFlagACK)
		}
		for j := range r.IntN(8) { // corrupt a few header and option bytes
			_ = j
			p[r.IntN(len(p))] = byte(r.Uint32())
		}
		s.Inject(p[:r.IntN(len(p)+1)])
	}
	s.Inject(nil)
	time.Sleep(100 * time.Millisecond)
	for len(emitted) > 0 {
		p := <-emitted
		k, _, ok := parseTCP4(p)
		if !ok || k.reversed() != keyOf(FlowID{Src: cli, Dst: srv}) {
			t.Fatalf("netstack answered a packet of a flow it does not own: % x", p)
		}
	}
}

func FuzzStackParseTCP4(f *testing.F) {
	f.Add(tcpPacket(netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), tcpFlagSYN))
	f.Add([]byte{0x45})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		k, _, ok := parseTCP4(pkt)
		if !ok {
			return
		}
		ihl := int(pkt[0]&0x0f) * 4
		if len(pkt) < ihl+14 || pkt[9] != protoTCP || k.reversed().reversed() != k {
			t.Fatalf("accepted a packet it cannot have parsed: % x", pkt)
		}
	})
}

func BenchmarkStackOwns(b *testing.B) {
	s := newTestStack(b)
	cli, srv := netip.MustParseAddrPort("10.144.144.2:41822"), netip.MustParseAddrPort("10.144.144.1:6379")
	for i := range 1000 { // a realistic table
		s.Claim(FlowID{Src: netip.AddrPortFrom(cli.Addr(), uint16(20000+i)), Dst: srv})
	}
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"hit", tcpPacket(srv, netip.AddrPortFrom(cli.Addr(), 20500), tcpFlagACK)}, // reverse direction: two lookups
		{"miss", tcpPacket(cli, netip.MustParseAddrPort("10.144.144.7:80"), tcpFlagACK)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Owns(bc.pkt)
			}
		})
	}
}
