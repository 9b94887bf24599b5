package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/config"
	"github.com/weft-vpn/weft/internal/control"
	"github.com/weft-vpn/weft/internal/dataplane"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/tun"
)

// These tests run whole nodes in one process: fake TUN devices (tun.Fake) and real UDP sockets on
// loopback, so the data path, handshakes, rekeying and dead-peer detection run under the race detector.

// freePort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

type testNode struct {
	n      *Node
	dev    *tun.Fake
	port   uint16
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startTestNode(t testing.TB, ip string, timers Timers, peers ...uint16) *testNode {
	t.Helper()
	return startTestNodeWith(t, ip, timers, nil, peers...)
}

// startTestNodeWith is startTestNode with a change to the config (nil: none) before the node starts.
func startTestNodeWith(t testing.TB, ip string, timers Timers, change func(*config.Config), peers ...uint16) *testNode {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Hostname = "node-" + ip
	cfg.NetworkName = "unit"
	cfg.NetworkSecret = "secret"
	cfg.IPv4 = netip.MustParsePrefix(ip + "/24")
	cfg.Control = filepath.Join(dir, "c.sock")
	cfg.StateDir = filepath.Join(dir, "state")
	port := freePort(t)
	cfg.Listen = []config.URI{{Scheme: "udp", Host: "127.0.0.1", Port: port}}
	for _, p := range peers {
		cfg.Peer = append(cfg.Peer, config.URI{Scheme: "udp", Host: "127.0.0.1", Port: p})
	}
	if change != nil {
		change(&cfg)
	}
	dev := tun.NewFake("fake0", 1400, 8)
	n, err := New(Options{Config: cfg, Device: dev, Timers: timers,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{n: n, dev: dev, port: port, cancel: cancel, done: make(chan error, 1)}
	go func() { tn.done <- n.Run(ctx) }()
	select {
	case <-n.Ready():
	case err := <-tn.done:
		t.Fatalf("node %s did not start: %v", ip, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("node %s not ready after 10s", ip)
	}
	t.Cleanup(tn.stop)
	return tn
}

func (tn *testNode) stop() {
	tn.once.Do(func() {
		tn.cancel()
		select {
		case <-tn.done:
		case <-time.After(10 * time.Second):
			panic("node did not stop within 10s")
		}
	})
}

// udpPacket builds an IPv4/UDP packet (checksums are not the node's business).
func udpPacket(src, dst string, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = 17
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[20:], 4000)
	binary.BigEndian.PutUint16(p[22:], 5000)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// expectPacket waits for want to come out of dev, skipping nothing else (the fake TUN only sees what the
// other node routed to it).
func expectPacket(t *testing.T, dev *tun.Fake, want []byte, timeout time.Duration) {
	t.Helper()
	select {
	case got := <-dev.Written():
		if !bytes.Equal(got, want) {
			t.Fatalf("packet changed in transit:\n got %x\nwant %x", got, want)
		}
	case <-time.After(timeout):
		t.Fatal("packet did not arrive")
	}
}

// waitSession injects packets until one crosses (the session may still be forming).
func waitSession(t testing.TB, from, to *testNode, src, dst string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		from.dev.Inject(udpPacket(src, dst, []byte("probe")))
		select {
		case <-to.dev.Written():
			// Drain probes still in flight.
			time.Sleep(50 * time.Millisecond)
			for len(to.dev.Written()) > 0 {
				<-to.dev.Written()
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("no packet from %s to %s within 10s", src, dst)
}

func TestTwoNodesCarryPackets(t *testing.T) {
	a := startTestNode(t, "10.1.0.1", Timers{})
	b := startTestNode(t, "10.1.0.2", Timers{}, a.port)
	waitSession(t, b, a, "10.1.0.2", "10.1.0.1")
	for _, size := range []int{0, 1, 1000, 1372} {
		p := udpPacket("10.1.0.2", "10.1.0.1", bytes.Repeat([]byte{byte(size)}, size))
		b.dev.Inject(p)
		expectPacket(t, a.dev, p, 5*time.Second)
		q := udpPacket("10.1.0.1", "10.1.0.2", bytes.Repeat([]byte{0xee}, size))
		a.dev.Inject(q)
		expectPacket(t, b.dev, q, 5*time.Second)
	}
	// No route: a packet for an address nobody owns is dropped and counted.
	b.dev.Inject(udpPacket("10.1.0.2", "10.1.0.99", []byte("x")))
	deadline := time.Now().Add(5 * time.Second)
	for (backend{b.n}).Status().Drops["no_route"] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no_route drop not counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ps := backend{a.n}.Peers()
	if len(ps) != 1 || ps[0].IPv4 != "10.1.0.2" || !ps[0].Direct || ps[0].Tunnel != "udp" || ps[0].RxBytes == 0 {
		t.Fatalf("peers of a: %+v", ps)
	}
}

// TestRekeyKeepsTraffic rekeys every 300 ms while packets flow: none may be lost to a key change.
func TestRekeyKeepsTraffic(t *testing.T) {
	timers := Timers{RekeyAfter: 300 * time.Millisecond, RejectAfter: 5 * time.Second}
	a := startTestNode(t, "10.1.0.1", timers)
	b := startTestNode(t, "10.1.0.2", timers, a.port)
	waitSession(t, b, a, "10.1.0.2", "10.1.0.1")
	const total = 200
	got := make(chan int)
	go func() {
		n := 0
		timeout := time.After(15 * time.Second)
		for n < total {
			select {
			case <-a.dev.Written():
				n++
			case <-timeout:
				got <- n
				return
			}
		}
		got <- n
	}()
	for i := 0; i < total; i++ {
		b.dev.Inject(udpPacket("10.1.0.2", "10.1.0.1", []byte{byte(i)}))
		time.Sleep(10 * time.Millisecond)
	}
	if n := <-got; n < total {
		t.Errorf("%d of %d packets arrived across rekeys", n, total)
	}
	var hs uint64
	a.n.peerTab.eachRead(func(p *peer) { hs = p.handshakes.Load() })
	if hs < 3 {
		t.Errorf("only %d handshakes in 2 s with RekeyAfter 300ms", hs)
	}
}

// TestDeadPeer: when a node stops, its peer declares it dead within DeadPeerTimeout (+ one timer tick)
// and forgets its routes.
func TestDeadPeer(t *testing.T) {
	timers := Timers{DeadPeerTimeout: time.Second}
	a := startTestNode(t, "10.1.0.1", timers)
	b := startTestNode(t, "10.1.0.2", timers, a.port)
	waitSession(t, b, a, "10.1.0.2", "10.1.0.1")
	a.stop()
	stopped := time.Now()
	for len(backend{b.n}.Peers()) != 0 {
		if time.Since(stopped) > 3*(time.Second+timerTick) {
			t.Fatalf("peer still listed %v after it stopped", time.Since(stopped))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok := b.n.table.Load().Lookup(netip.MustParseAddr("10.1.0.1")); ok {
		t.Fatal("route to the dead peer kept")
	}
}

// TestGarbageAndLeaks: garbage at the listening port is dropped and counted, and stopping nodes leaves
// no goroutine behind.
func TestGarbageAndLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		a := startTestNode(t, "10.1.0.1", Timers{})
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(a.port)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, g := range [][]byte{{}, {0}, {1}, {4, 0, 0, 0, 9, 9, 9, 9}, bytes.Repeat([]byte{4}, 100), bytes.Repeat([]byte{2}, 90), {3, 1, 2}} {
			c.Write(g)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			st := backend{a.n}.Status()
			var sum uint64
			for _, v := range st.Drops {
				sum += v
			}
			if sum >= 5 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("garbage not counted: %v", st.Drops)
			}
			time.Sleep(20 * time.Millisecond)
		}
		a.stop()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d after stop:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestHelloRoundTrip(t *testing.T) {
	for _, h := range []hello{
		{IPv4: netip.MustParsePrefix("10.144.144.7/24"), Hostname: "gamma"},
		{IPv4: netip.MustParsePrefix("10.144.144.7/24"), Hostname: "gamma", Cert: []byte("WCRT certificate bytes")},
	} {
		got, err := parseHello(h.marshal())
		if err != nil || got.IPv4 != h.IPv4 || got.Hostname != h.Hostname || !bytes.Equal(got.Cert, h.Cert) {
			t.Fatalf("round trip of %+v: %+v, %v", h, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {1}, {2, 10, 0, 0, 1, 24, 0}, {1, 10, 0, 0, 1, 40, 0}, {1, 10, 0, 0, 1, 24, 5, 'a'},
		{1, 10, 0, 0, 1, 24, 0, 0}, {1, 10, 0, 0, 1, 24, 0, 0, 0}, {1, 10, 0, 0, 1, 24, 0, 0, 2, 'x'}} {
		if _, err := parseHello(bad); err == nil {
			t.Errorf("parseHello(%x) accepted", bad)
		}
	}
}

func FuzzParseHello(f *testing.F) {
	f.Add(hello{IPv4: netip.MustParsePrefix("10.0.0.1/24"), Hostname: "x"}.marshal())
	f.Add(hello{IPv4: netip.MustParsePrefix("10.0.0.1/24"), Hostname: "x", Cert: []byte("cert")}.marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHello(b)
		if err == nil && !bytes.Equal(h.marshal(), b) {
			t.Fatalf("accepted %x but re-encodes as %x", b, h.marshal())
		}
	})
}

func TestCostHysteresis(t *testing.T) {
	cases := []struct {
		old, cur uint32
		want     bool
	}{
		{1000, 1200, false},   // 20 %: jitter
		{60, 250, false},      // under 250 µs of change
		{20000, 23000, false}, // 15 %
		{20000, 26000, true},  // 30 % and 6 ms
		{1, 5000, true},       // first real measurement
		{1010, 50, true},      // a slow first sample, then the real path: must not stay announced
		{500, 1400, true},
	}
	for _, c := range cases {
		if got := costChanged(c.old, c.cur); got != c.want {
			t.Errorf("costChanged(%d, %d) = %v, want %v", c.old, c.cur, got, c.want)
		}
	}
}

var _ control.Backend = backend{}

// TestForgedResponseKeepsHandshake: a forged type-2 packet naming a pending handshake's index (what
// anyone who sees message 1 on the wire can send) must not abort it; the genuine response that follows
// completes the same handshake (the node answers it with message 3 at once, without starting over).
func TestForgedResponseKeepsHandshake(t *testing.T) {
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	port := uint16(sock.LocalAddr().(*net.UDPAddr).Port)
	a := startTestNode(t, "10.1.0.1", Timers{}, port)

	id, err := session.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cfg := session.Config{Identity: id, PSK: session.DerivePSK("unit", "secret")}
	buf := make([]byte, 65536)
	sock.SetReadDeadline(time.Now().Add(10 * time.Second))
	var msg1 []byte
	var from *net.UDPAddr
	for msg1 == nil {
		k, addr, err := sock.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no handshake from the node: %v", err)
		}
		if typ, _ := session.PacketType(buf[:k]); typ == session.TypeHandshakeInit {
			m, _, ok := session.SplitMAC2(buf[:k]) // the wire form ends in a mac2 trailer
			if !ok {
				t.Fatalf("a type-1 packet of %d bytes without its mac2 trailer", k)
			}
			msg1, from = append([]byte(nil), m...), addr
		}
	}
	resp, msg2, _, err := session.Respond(cfg, msg1, 0x5151, hello{IPv4: netip.MustParsePrefix("10.1.0.2/24"), Hostname: "peer"}.marshal())
	if err != nil {
		t.Fatal(err)
	}
	forged := append([]byte(nil), msg2...)
	for i := 12; i < len(forged); i++ {
		forged[i] ^= 0x5a // same header (type, indices), garbage after it
	}
	if _, err := sock.WriteToUDP(forged, from); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := sock.WriteToUDP(msg2, from); err != nil {
		t.Fatal(err)
	}
	sock.SetReadDeadline(time.Now().Add(time.Second)) // well inside the 2 s retry of the initiator
	for {
		k, _, err := sock.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no message 3 within 1 s of the genuine response (the forged one aborted the handshake?); drops %v",
				backend{a.n}.Status().Drops)
		}
		if typ, _ := session.PacketType(buf[:k]); typ != session.TypeHandshakeFinal {
			continue
		}
		if _, _, err := resp.Finish(buf[:k]); err != nil {
			t.Fatalf("message 3 from the node does not complete the handshake: %v", err)
		}
		break
	}
	if d := (backend{a.n}).Status().Drops["decrypt"]; d == 0 {
		t.Error("the forged response was not counted as a decrypt drop")
	}
}

func TestLoopbackOnly(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9100": true, "[::1]:9100": true, "localhost:9100": true,
		":9100": false, "0.0.0.0:9100": false, "192.0.2.1:9100": false, "[::]:9100": false, "nonsense": false,
	} {
		if got := loopbackOnly(addr); got != want {
			t.Errorf("loopbackOnly(%q) = %v, want %v", addr, got, want)
		}
	}
}

// dropsOf returns node n's drop counter for reason.
func dropsOf(n *Node, reason string) uint64 { return (backend{n}).Status().Drops[reason] }

// waitDrop waits until n counted a drop for reason.
func waitDrop(t *testing.T, n *Node, reason string, before uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for dropsOf(n, reason) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("no %s drop counted (drops %v)", reason, (backend{n}).Status().Drops)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSourceValidation: an honest weft refuses to send packets whose source it does not own; a member
// (c) that skips that check and seals packets with b's own address, or an address nobody owns, into its
// real session with b has them dropped by b; KCP segments that claim to come from b itself are dropped;
// the owners' own packets pass.
func TestSourceValidation(t *testing.T) {
	a := startTestNode(t, "10.1.0.1", Timers{})
	b := startTestNode(t, "10.1.0.2", Timers{}, a.port)
	c := startTestNode(t, "10.1.0.3", Timers{}, a.port, b.port)
	waitSession(t, a, b, "10.1.0.1", "10.1.0.2")
	waitSession(t, c, b, "10.1.0.3", "10.1.0.2")

	// The sending side: c's own kernel hands it a packet with a's source: c does not send it.
	before := dropsOf(c.n, "src_not_owned")
	c.dev.Inject(udpPacket("10.1.0.1", "10.1.0.2", []byte("spoof via tun")))
	waitDrop(t, c.n, "src_not_owned", before)

	// The receiving side: a hostile c seals spoofed packets straight into its session with b.
	pb := c.n.livePeer(b.n.self)
	if pb == nil {
		t.Fatal("c has no direct session with b")
	}
	spoof := func(src string) {
		ip := udpPacket(src, "10.1.0.2", []byte("spoofed"))
		buf := make([]byte, session.DataHeaderLen+ipHeaderLen+len(ip), session.Overhead+ipHeaderLen+len(ip))
		buf[session.DataHeaderLen], buf[session.DataHeaderLen+1] = msgIP, defaultTTL
		copy(buf[dataplane.TUNWriteOffset:], ip)
		if !c.n.sealAndSend(pb, buf, ipHeaderLen+len(ip)) {
			t.Fatal("c could not send on its session with b")
		}
	}
	before = dropsOf(b.n, "src_spoofed")
	spoof("10.1.0.2") // b's own address
	waitDrop(t, b.n, "src_spoofed", before)
	before = dropsOf(b.n, "src_unknown")
	spoof("10.9.9.9") // nobody's
	waitDrop(t, b.n, "src_unknown", before)
	select {
	case p := <-b.dev.Written():
		t.Fatalf("b delivered a spoofed packet to its TUN: %x", p)
	case <-time.After(200 * time.Millisecond):
	}

	// A KCP segment whose header names b itself as its source node.
	seg := make([]byte, session.DataHeaderLen+kcpHeaderLen+24, session.Overhead+kcpHeaderLen+24)
	m := seg[session.DataHeaderLen:]
	m[0], m[1] = msgKCP, defaultTTL
	putUint64(m[2:], uint64(b.n.self))
	putUint64(m[10:], uint64(b.n.self))
	before = dropsOf(b.n, "src_spoofed")
	if !c.n.sealAndSend(pb, seg, kcpHeaderLen+24) {
		t.Fatal("c could not send on its session with b")
	}
	waitDrop(t, b.n, "src_spoofed", before)

	// The proxy's ownership rule (what b's proxy asks before it re-originates a flow): a's address
	// belongs to a only, b's own address to nobody else, an unknown address to nobody.
	for _, tt := range []struct {
		node session.NodeID
		addr string
		want bool
	}{
		{a.n.self, "10.1.0.1", true}, {c.n.self, "10.1.0.1", false},
		{c.n.self, "10.1.0.2", false}, {c.n.self, "10.9.9.9", false},
	} {
		before = dropsOf(b.n, "proxy_open_spoofed")
		if got := b.n.owns(tt.node, netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("b: does node %v own %s? %v, want %v", tt.node, tt.addr, got, tt.want)
		}
		if counted := dropsOf(b.n, "proxy_open_spoofed") > before; counted == tt.want {
			t.Errorf("b: proxy_open_spoofed counted %v for node %v and %s, want %v", counted, tt.node, tt.addr, !tt.want)
		}
	}

	// The owners' own traffic passes.
	for _, tn := range []*testNode{a, c} {
		src := tn.n.cfg.IPv4.Addr().String()
		p := udpPacket(src, "10.1.0.2", []byte("real "+src))
		tn.dev.Inject(p)
		select {
		case got := <-b.dev.Written():
			if !bytes.Equal(got, p) {
				t.Fatalf("b got %x, want %s's packet %x", got, src, p)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s's own packet did not reach b (drops at %s: %v; at b: %v)", src, src,
				(backend{tn.n}).Status().Drops, (backend{b.n}).Status().Drops)
		}
	}
}
