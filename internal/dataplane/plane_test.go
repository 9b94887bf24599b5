package dataplane

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/tun"
	"github.com/weft-vpn/weft/internal/underlay"
)

// Three nodes: alpha 10.7.0.1 exposes 192.168.50.0/24, beta 10.7.0.2 exposes 172.20.0.0/24, gamma
// 10.7.0.3; all direct neighbours. The planes under test are alpha's and beta's, over a real session
// (a full handshake) and links that record what is sent.
const (
	alpha, beta, gamma session.NodeID = 1, 2, 3
)

var (
	alphaLocal = Local{IP: netip.MustParseAddr("10.7.0.1"), Subnets: []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")}}
	betaLocal  = Local{IP: netip.MustParseAddr("10.7.0.2"), Subnets: []netip.Prefix{netip.MustParsePrefix("172.20.0.0/24")}}
)

func table(self session.NodeID) *mesh.Table {
	ann := func(id session.NodeID, ip string, subnet string, nbrs ...session.NodeID) mesh.Announce {
		a := mesh.Announce{Origin: id, Seq: 1, Hostname: "n" + ip, IPv4: netip.MustParsePrefix(ip + "/24")}
		if subnet != "" {
			a.Subnets = []mesh.Subnet{{Prefix: netip.MustParsePrefix(subnet)}}
		}
		for _, n := range nbrs {
			a.Neighbors = append(a.Neighbors, mesh.Neighbor{ID: n, CostUS: 1000})
		}
		return a
	}
	return mesh.Compute(self, []mesh.Announce{
		ann(alpha, "10.7.0.1", "192.168.50.0/24", beta, gamma),
		ann(beta, "10.7.0.2", "172.20.0.0/24", alpha, gamma),
		ann(gamma, "10.7.0.3", "", alpha, beta),
	})
}

// keypairs runs a real handshake and returns the initiator's and the responder's keypair.
func keypairs(t testing.TB) (*session.Keypair, *session.Keypair) {
	t.Helper()
	cfg := func() session.Config {
		id, err := session.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		return session.Config{Identity: id, PSK: [32]byte{7}}
	}
	ic, rc := cfg(), cfg()
	in, msg1, err := session.NewInitiator(ic, 11, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, msg2, _, err := session.Respond(rc, msg1, 22, nil)
	if err != nil {
		t.Fatal(err)
	}
	ikp, msg3, _, err := in.Finish(msg2, nil)
	if err != nil {
		t.Fatal(err)
	}
	rkp, _, err := r.Finish(msg3)
	if err != nil {
		t.Fatal(err)
	}
	return ikp, rkp
}

// recLink records what is sent on it (copies), or discards it.
type recLink struct {
	mu      sync.Mutex
	pkts    [][]byte
	discard bool
}

func (l *recLink) Send(p []byte) error { return l.SendBatch([][]byte{p}) }
func (l *recLink) SendBatch(ps [][]byte) error {
	if l.discard {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range ps {
		l.pkts = append(l.pkts, bytes.Clone(p))
	}
	return nil
}
func (l *recLink) Network() string            { return "udp" }
func (l *recLink) RemoteAddr() netip.AddrPort { return netip.MustParseAddrPort("192.0.2.1:7000") }
func (l *recLink) Done() <-chan struct{}      { return nil }
func (l *recLink) Close() error               { return nil }
func (l *recLink) sent() [][]byte             { l.mu.Lock(); defer l.mu.Unlock(); return slices.Clone(l.pkts) }
func (l *recLink) take() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.pkts
	l.pkts = nil
	return p
}
func (l *recLink) count() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.pkts) }

var _ underlay.Link = (*recLink)(nil)

// directSealer seals everything for a direct peer in one session (the node's sealer for a direct peer).
type directSealer struct {
	kp   *session.Keypair
	link underlay.Link
	to   session.NodeID // the only node it has a session with
}

func (s *directSealer) SealTo(_ *mesh.Table, dst session.NodeID, buf []byte, msgLen int) ([]byte, underlay.Link, bool) {
	if dst != s.to {
		return nil, nil, false
	}
	pkt, err := s.kp.SealInPlace(buf[E2EExtra:], msgLen)
	if err != nil {
		return nil, nil, false
	}
	return pkt, s.link, false
}

// side is one plane with its counters.
type side struct {
	p       *Plane
	dev     tun.Device
	drops   map[string]int
	spoofed []string
	traffic map[session.NodeID]*Counters
	mu      sync.Mutex
}

func (s *side) drop(r string) { s.mu.Lock(); s.drops[r]++; s.mu.Unlock() }
func (s *side) dropsOf(r string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drops[r]
}

func newSide(t testing.TB, self session.NodeID, local Local, dev tun.Device, sealer Sealer, demux func(*side) func([]byte, underlay.Link) []byte) *side {
	t.Helper()
	s := &side{dev: dev, drops: map[string]int{}, traffic: map[session.NodeID]*Counters{}}
	tab := table(self)
	for _, id := range []session.NodeID{alpha, beta, gamma} {
		s.traffic[id] = new(Counters)
	}
	var err error
	cfg := Config{
		Dev: dev, Local: local, Table: func() *mesh.Table { return tab }, Sealer: sealer,
		Traffic: func(id session.NodeID) *Counters { return s.traffic[id] },
		Drop:    s.drop,
		Spoofed: func(origin session.NodeID, src netip.Addr, why string) {
			s.mu.Lock()
			s.spoofed = append(s.spoofed, origin.String()+" "+src.String()+" "+why)
			s.mu.Unlock()
		},
		Demux: func([]byte, underlay.Link) []byte { return nil },
	}
	if demux != nil {
		cfg.Demux = demux(s)
	}
	if s.p, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return s
}

// opener is beta's demux for datagrams from alpha: open in place in the session, then Deliver.
func opener(kp *session.Keypair, origin session.NodeID) func(*side) func([]byte, underlay.Link) []byte {
	return func(s *side) func([]byte, underlay.Link) []byte {
		return func(pkt []byte, _ underlay.Link) []byte {
			pt, err := kp.Open(pkt[session.DataHeaderLen:session.DataHeaderLen], pkt)
			if err != nil || len(pt) < InnerHeaderLen || pt[0] != MsgIP {
				s.drop("decrypt")
				return nil
			}
			if n, ok := s.p.Deliver(origin, pt[InnerHeaderLen:]); ok {
				return pkt[:TUNWriteOffset+n]
			}
			return nil
		}
	}
}

// ipv4 builds a UDP-in-IPv4 packet of the given total length.
func ipv4(src, dst string, length int) []byte {
	p := make([]byte, length)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(length))
	p[8], p[9] = 64, 17
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	for i := 28; i < length; i++ {
		p[i] = byte(i)
	}
	return p
}

// outbound runs one packet through p.Outbound as Run would and flushes.
func outbound(p *Plane, ip []byte) {
	buf := make([]byte, TUNReadOffset+len(ip)+Tailroom)
	copy(buf[TUNReadOffset:], ip)
	var out Batch
	p.Outbound(p.cfg.Table(), buf, len(ip), &out)
	out.Flush()
}

func TestLocalOwns(t *testing.T) {
	for _, c := range []struct {
		addr string
		want bool
	}{{"10.7.0.1", true}, {"192.168.50.0", true}, {"192.168.50.255", true}, {"10.7.0.2", false}, {"192.168.51.1", false}} {
		if got := alphaLocal.Owns(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("alpha owns %s: %v, want %v", c.addr, got, c.want)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	dev := tun.NewFake("t0", 1400, 1)
	defer dev.Close()
	if _, err := New(Config{Dev: dev, Local: alphaLocal}); err == nil {
		t.Fatal("New accepted a config without Table, Sealer, Demux, Traffic, Drop and Spoofed")
	}
	if _, err := New(Config{Local: alphaLocal}); err == nil {
		t.Fatal("New accepted a config without a TUN device")
	}
}

// TestOutbound: alpha sends only from its own addresses, only where a route goes, lets the proxy take
// what it claims, and the sealed datagram opens at beta to exactly the packet it read, with its TTL.
func TestOutbound(t *testing.T) {
	akp, bkp := keypairs(t)
	link := &recLink{}
	dev := tun.NewFake("a0", 1400, 1)
	defer dev.Close()
	a := newSide(t, alpha, alphaLocal, dev, &directSealer{kp: akp, link: link, to: beta}, nil)
	var proxied [][]byte
	a.p.cfg.Proxy = func(ip []byte) bool {
		if ip[9] == 6 {
			proxied = append(proxied, bytes.Clone(ip))
			return true
		}
		return false
	}

	for _, src := range []string{"10.7.0.1", "192.168.50.9"} {
		ip := ipv4(src, "10.7.0.2", 1400)
		outbound(a.p, ip)
		sent := link.take()
		if len(sent) != 1 {
			t.Fatalf("from %s: %d datagrams sent, want 1", src, len(sent))
		}
		pt, err := bkp.Open(nil, sent[0])
		if err != nil {
			t.Fatalf("from %s: beta cannot open the datagram: %v", src, err)
		}
		if pt[0] != MsgIP || pt[1] != DefaultTTL || !bytes.Equal(pt[InnerHeaderLen:], ip) {
			t.Fatalf("from %s: beta opened type %d TTL %d and a packet equal to the one sent: %v", src, pt[0], pt[1], bytes.Equal(pt[2:], ip))
		}
	}
	if got := a.traffic[beta].TxPackets.Load(); got != 2 {
		t.Errorf("beta's tx packets %d, want 2", got)
	}

	// A trailing byte beyond the IP total length is not sent.
	ip := ipv4("10.7.0.1", "172.20.0.7", 100)
	buf := make([]byte, TUNReadOffset+len(ip)+1+Tailroom)
	copy(buf[TUNReadOffset:], ip)
	var out Batch
	a.p.Outbound(a.p.cfg.Table(), buf, len(ip)+1, &out)
	out.Flush()
	if sent := link.take(); len(sent) != 1 || len(sent[0]) != session.Overhead+InnerHeaderLen+100 {
		t.Fatalf("a 100-byte packet with a trailing byte: sent %d datagrams (want one of %d bytes)", len(sent), session.Overhead+InnerHeaderLen+100)
	}

	for _, c := range []struct {
		name, reason string
		ip           []byte
	}{
		{"a source alpha does not own", "src_not_owned", ipv4("10.7.0.3", "10.7.0.2", 100)},
		{"beta's address as source", "src_not_owned", ipv4("10.7.0.2", "10.7.0.2", 100)},
		{"no route", "no_route", ipv4("10.7.0.1", "10.99.0.1", 100)},
		{"IPv6", "not_ipv4", append([]byte{0x60}, make([]byte, 59)...)},
		{"a length beyond the read", "not_ipv4", ipv4("10.7.0.1", "10.7.0.2", 100)[:80]},
	} {
		before := a.dropsOf(c.reason)
		outbound(a.p, c.ip)
		if n := link.count(); n != 0 {
			t.Errorf("%s: %d datagrams sent, want none", c.name, n)
			link.take()
		}
		if a.dropsOf(c.reason) != before+1 {
			t.Errorf("%s: drop %s not counted (drops %v)", c.name, c.reason, a.drops)
		}
	}

	tcp := ipv4("10.7.0.1", "10.7.0.2", 60)
	tcp[9] = 6
	outbound(a.p, tcp)
	if len(proxied) != 1 || !bytes.Equal(proxied[0], tcp) || link.count() != 0 {
		t.Fatalf("the proxy claimed TCP: %d packets reached it, %d datagrams sent (want 1 and 0)", len(proxied), link.count())
	}
}

// TestDeliver: beta lets a packet in only for its own addresses and only from an address its sender
// owns; everything else is dropped with its reason and reported.
func TestDeliver(t *testing.T) {
	dev := tun.NewFake("b0", 1400, 1)
	defer dev.Close()
	b := newSide(t, beta, betaLocal, dev, &directSealer{}, nil)
	for _, c := range []struct {
		name     string
		origin   session.NodeID
		src, dst string
		reason   string // "" = delivered
	}{
		{"alpha's virtual IP", alpha, "10.7.0.1", "10.7.0.2", ""},
		{"alpha's subnet to beta's subnet", alpha, "192.168.50.77", "172.20.0.5", ""},
		{"gamma's address from alpha", alpha, "10.7.0.3", "10.7.0.2", "src_not_sender"},
		{"beta's own address from alpha", alpha, "10.7.0.2", "10.7.0.2", "src_spoofed"},
		{"beta's subnet from alpha", alpha, "172.20.0.9", "10.7.0.2", "src_spoofed"},
		{"nobody's address", alpha, "10.99.1.1", "10.7.0.2", "src_unknown"},
		{"not for beta", alpha, "10.7.0.1", "10.7.0.3", "not_local"},
	} {
		before := b.dropsOf(c.reason)
		n, ok := b.p.Deliver(c.origin, ipv4(c.src, c.dst, 120))
		switch {
		case c.reason == "" && (!ok || n != 120):
			t.Errorf("%s: not delivered (drops %v)", c.name, b.drops)
		case c.reason != "" && ok:
			t.Errorf("%s: delivered, want a %s drop", c.name, c.reason)
		case c.reason != "" && b.dropsOf(c.reason) != before+1:
			t.Errorf("%s: drop %s not counted (drops %v)", c.name, c.reason, b.drops)
		}
	}
	if len(b.spoofed) != 4 {
		t.Errorf("spoofed sources reported %d times, want 4 (not_local is not a spoof): %q", len(b.spoofed), b.spoofed)
	}
	if got := b.traffic[alpha].RxPackets.Load(); got != 2 {
		t.Errorf("alpha's rx packets %d, want 2", got)
	}
	if _, ok := b.p.Deliver(alpha, []byte{0x45, 0, 0}); ok || b.dropsOf("malformed") != 1 {
		t.Errorf("a 3-byte packet: delivered %v, malformed drops %d", ok, b.dropsOf("malformed"))
	}
}

// TestRunToReceive: packets injected into alpha's TUN come out of beta's TUN byte for byte, through
// alpha's Run, a real session, and beta's Receive; a tampered datagram and a spoofed one do not; Run
// returns nil once the TUN is closed.
func TestRunToReceive(t *testing.T) {
	akp, bkp := keypairs(t)
	link := &recLink{}
	adev, bdev := tun.NewFake("a0", 1400, 16), tun.NewFake("b0", 1400, 16)
	defer bdev.Close()
	a := newSide(t, alpha, alphaLocal, adev, &directSealer{kp: akp, link: link, to: beta}, nil)
	b := newSide(t, beta, betaLocal, bdev, &directSealer{}, opener(bkp, alpha))
	afterReceive := 0
	b.p.cfg.AfterReceive = func() { afterReceive++ }

	done := make(chan error, 1)
	go func() { done <- a.p.Run(context.Background()) }()
	var want [][]byte
	for i := range 20 {
		ip := ipv4("10.7.0.1", "10.7.0.2", 60+i*70)
		want = append(want, ip)
		adev.Inject(ip)
	}
	deadline := time.Now().Add(5 * time.Second)
	for link.count() < len(want) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	sent := link.take()
	if len(sent) != len(want) {
		t.Fatalf("alpha sent %d datagrams for %d packets", len(sent), len(want))
	}
	tampered := bytes.Clone(sent[3])
	tampered[len(tampered)/2] ^= 1
	var pkts []underlay.Packet
	for _, s := range append(sent, tampered) {
		pkts = append(pkts, underlay.Packet{Data: s, From: link})
	}
	b.p.Receive(pkts)
	for i, w := range want {
		select {
		case got := <-bdev.Written():
			if !bytes.Equal(got, w) {
				t.Fatalf("packet %d came out of beta's TUN changed (%d bytes, want %d)", i, len(got), len(w))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("packet %d never came out of beta's TUN", i)
		}
	}
	select {
	case got := <-bdev.Written():
		t.Fatalf("beta's TUN got a %d-byte packet more than was sent (the tampered datagram?)", len(got))
	case <-time.After(50 * time.Millisecond):
	}
	if b.dropsOf("decrypt") != 1 || afterReceive != 1 {
		t.Errorf("tampered datagram: %d decrypt drops (want 1); AfterReceive ran %d times (want 1)", b.dropsOf("decrypt"), afterReceive)
	}

	adev.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after the TUN closed: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the TUN closed")
	}
}

// failingDev fails every read with err.
type failingDev struct {
	tun.Device
	err error
}

func (d failingDev) Read([][]byte, []int, int) (int, error) { return 0, d.err }
func (d failingDev) BatchSize() int                         { return 1 }

func TestRunReturnsReadErrors(t *testing.T) {
	dev := tun.NewFake("a0", 1400, 1)
	defer dev.Close()
	boom := errors.New("device gone")
	a := newSide(t, alpha, alphaLocal, failingDev{dev, boom}, &directSealer{}, nil)
	if err := a.p.Run(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Run on a failing TUN: %v, want %v", err, boom)
	}
	a = newSide(t, alpha, alphaLocal, failingDev{dev, os.ErrClosed}, &directSealer{}, nil)
	if err := a.p.Run(context.Background()); err != nil {
		t.Fatalf("Run on a closed TUN: %v, want nil", err)
	}
}

// TestNoAllocations: the packet path allocates nothing per packet, either way (Receive only without
// -race, see below).
func TestNoAllocations(t *testing.T) {
	akp, bkp := keypairs(t)
	link := &recLink{discard: true}
	a := newSide(t, alpha, alphaLocal, nullDev{}, &directSealer{kp: akp, link: link, to: beta}, nil)
	b := newSide(t, beta, betaLocal, nullDev{}, &directSealer{}, opener(bkp, alpha))
	ip := ipv4("10.7.0.1", "10.7.0.2", 1400)
	buf := make([]byte, TUNReadOffset+len(ip)+Tailroom)
	tab := a.p.cfg.Table()
	var out Batch
	if n := testing.AllocsPerRun(1000, func() {
		copy(buf[TUNReadOffset:], ip)
		a.p.Outbound(tab, buf, len(ip), &out)
		out.Flush()
	}); n != 0 {
		t.Errorf("Outbound allocated %.1f times per packet, want 0", n)
	}
	if raceEnabled {
		// Receive's batch slice comes from a sync.Pool, which the race detector empties at random;
		// Outbound, checked above, uses none.
		t.Log("Receive's allocations are checked without -race only")
		return
	}
	pkts := sealed(t, akp, 1000, ip)
	i := 0
	one := make([]underlay.Packet, 1)
	if n := testing.AllocsPerRun(999, func() {
		one[0] = underlay.Packet{Data: pkts[i], From: link}
		i++
		b.p.Receive(one)
	}); n != 0 {
		t.Errorf("Receive allocated %.1f times per packet, want 0", n)
	}
}

// nullDev is a TUN that reads nothing and takes every write.
type nullDev struct{}

func (nullDev) Read([][]byte, []int, int) (int, error) { return 0, os.ErrClosed }
func (nullDev) Write(b [][]byte, _ int) (int, error)   { return len(b), nil }
func (nullDev) BatchSize() int                         { return 128 }
func (nullDev) Name() string                           { return "null0" }
func (nullDev) MTU() int                               { return 1400 }
func (nullDev) Close() error                           { return nil }

// sealed returns n datagrams of ip sealed in kp's session, as alpha's Outbound makes them.
func sealed(t testing.TB, kp *session.Keypair, n int, ip []byte) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		buf := make([]byte, E2EExtra+session.DataHeaderLen+InnerHeaderLen+len(ip)+Tailroom)
		m := buf[MsgOffset:]
		m[0], m[1] = MsgIP, DefaultTTL
		copy(m[InnerHeaderLen:], ip)
		pkt, err := kp.SealInPlace(buf[E2EExtra:], InnerHeaderLen+len(ip))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = pkt
	}
	return out
}

// BenchmarkOutbound: a 1400-byte packet read from the TUN through the source rule, the route lookup,
// the seal and a 64-packet batch to a link (which discards it): the sender's CPU per packet.
func BenchmarkOutbound(b *testing.B) {
	akp, _ := keypairs(b)
	link := &recLink{discard: true}
	a := newSide(b, alpha, alphaLocal, nullDev{}, &directSealer{kp: akp, link: link, to: beta}, nil)
	ip := ipv4("10.7.0.1", "10.7.0.2", 1400)
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, TUNReadOffset+len(ip)+Tailroom)
	}
	tab := a.p.cfg.Table()
	var out Batch
	b.SetBytes(int64(len(ip)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		copy(bufs[i][TUNReadOffset:], ip)
		a.p.Outbound(tab, bufs[i], len(ip), &out)
		if i++; i == len(bufs) {
			out.Flush()
			i = 0
		}
	}
	out.Flush()
}

// BenchmarkReceive: sealed 1400-byte datagrams through Receive in batches of 64: open in place, the
// destination and source rules, one TUN write per batch (to a device that discards it): the
// receiver's CPU per packet.
func BenchmarkReceive(b *testing.B) {
	akp, bkp := keypairs(b)
	link := &recLink{discard: true}
	r := newSide(b, beta, betaLocal, nullDev{}, &directSealer{}, opener(bkp, alpha))
	ip := ipv4("10.7.0.1", "10.7.0.2", 1400)
	const batch = 64
	pkts := make([]underlay.Packet, batch)
	b.SetBytes(batch * int64(len(ip)))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for j, s := range sealed(b, akp, batch, ip) {
			pkts[j] = underlay.Packet{Data: s, From: link}
		}
		b.StartTimer()
		r.p.Receive(pkts)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/packet")
	if d := r.dropsOf("decrypt"); d != 0 {
		b.Fatalf("%d datagrams did not open", d)
	}
}
