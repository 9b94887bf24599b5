// Command hostile is the e2e tests' hostile member: a process that knows the network name and secret,
// joins a node as an ordinary member would (a real handshake over UDP, with its own fresh identity) and
// then attacks it from inside the mesh. It is a test tool, never shipped.
//
//	hostile -peer 172.16.1.2:11010 -ipv4 10.144.144.66/24 forge-announce -victim NODEID
//	  floods announcements for node NODEID, in the two ways a forger can try: fake links (this member as
//	  the victim's only neighbour) under its own signature with the victim's origin, and the victim's
//	  real announcement (passed on by the node) with a huge sequence number. It prints one line,
//	  "sent N", and exits 0; whether the attack failed is for the test to check on the node.
//
//	hostile -peer ADDR -ca ca.crt -cert node.crt -cert-key node.key -ipv4 10.144.144.5/24 \
//	        claim-ip -ip 10.144.144.4/24 -to 10.144.144.1:7000
//	  certificate mode: joins with its own valid certificate (which lists -ipv4), then announces -ip,
//	  which the certificate does not list (under its own signature, with its certificate), and sends
//	  -count UDP datagrams from -ip to -to through the session. Prints "sent N".
//
//	hostile -peer A -ipv4 10.144.144.66/24 relay -to C [-tamper-every N -rewrite-src FROM,TO] \
//	        [-inject-src IP -inject-to ADDR:PORT]
//	  a rogue relay: joins node A (-peer) and node C (-to), announces itself as the neighbour of both
//	  (signed, every second) and passes their announcements on, so that A and C, which have no session
//	  of their own, route through it. It relays their end-to-end traffic (msgSealed, msgRoutedHandshake)
//	  by destination node, as an honest relay does, answers pings, and attacks: every Nth sealed message
//	  from A to C has its bytes XORed where an IP packet's source address sits (a rewrite of FROM to TO
//	  were the packet not authenticated), and on SIGUSR1 -count UDP datagrams from -inject-src go to
//	  -inject-to over its own session with C (it prints "injected N" after them). It prints "relaying"
//	  once both sessions are up, and on SIGTERM "forwarded N tampered M injected K", then exits 0.
//
//	hostile -peer ADDR invent-origins -count 5000
//	  sends announcements for -count invented nodes (each with its own fresh key and a valid signature,
//	  each claiming to be this member's neighbour, addresses 10.144.144.100-249), as fast as the socket
//	  takes them. Prints "sent N".
//
//	hostile -peer ADDR kcp-open -count 10000 [-invent]
//	  sends -count KCP segments that each open a new proxied conversation with the node: from this
//	  member itself (the node's per-peer cap must hold), or with -invent from invented node IDs (the
//	  node must drop them all: a segment comes only from the node whose session carries it). Prints
//	  "sent N".
//
// Floods (issue 10). These need no session: an outsider can send them, and replay-init only needs a
// first handshake message that a member made once.
//
//	hostile flood-unknown -to ADDR -rate 3000 -ports 1000 -seconds 10
//	  data packets for receiver indices the node does not know, from -ports source ports in turn, at
//	  -rate per second; counts the handshake messages the node sends back. Prints "sent N replies M".
//
//	hostile replay-init -to ADDR -rate 5000 -seconds 10
//	  makes one valid first handshake message (it knows the secret), sends it once, then replays it at
//	  -rate per second; counts the answers. Prints "sent N answered M".
//
//	hostile flood-init -to ADDR -srcs 172.16.2.10,200 -rate 4000 -seconds 8
//	  fresh valid first handshake messages (it knows the secret) from -srcs source addresses (the first
//	  and how many, consecutive; the host must have them), in turn, at -rate per second, as a sender
//	  with forged sources would: it never answers. Counts what comes back. Prints
//	  "sent N cookies C answers A".
//
//	hostile tcp-idle -to ADDR -conns 500 -seconds 15
//	  opens -conns TCP connections and sends nothing; reports how many the node accepted and how long
//	  the longest stayed open. Prints "opened N closed M longest-ms L".
package main

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weft-vpn/weft/internal/cert"
	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/session"
)

// Inner message types of internal/node (wire.go), repeated here: the tool speaks the protocol from outside.
const (
	msgKCP             = 5
	msgIP              = 1
	msgPing            = 2
	msgPong            = 3
	msgAnnounce        = 4
	msgSealed          = 7
	msgRoutedHandshake = 8
	helloVersion       = 1
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

func run() error {
	name := flag.String("network-name", "e2e-net", "network name")
	secret := flag.String("network-secret", "correct horse battery staple", "network secret")
	peerAddr := flag.String("peer", "", "node to join, ip:port")
	ipv4 := flag.String("ipv4", "10.144.144.66/24", "virtual address this member claims")
	hostname := flag.String("hostname", "mallory", "hostname this member claims")
	count := flag.Int("count", 50, "packets per attack")
	caFile := flag.String("ca", "", "certificate mode: the network CA's certificate (the network key derives from it)")
	certFile := flag.String("cert", "", "certificate mode: this member's certificate, sent in the handshake and announcements")
	keyFile := flag.String("cert-key", "", "certificate mode: this member's key")
	flag.Parse()
	switch flag.Arg(0) {
	case "flood-unknown", "replay-init", "tcp-idle", "flood-init":
		return flood(flag.Arg(0), flag.Args()[1:], *name, *secret)
	}
	if flag.NArg() < 1 {
		return errors.New("usage: hostile [flags] forge-announce -victim NODEID | claim-ip -ip ADDR/PREFIX -to ADDR:PORT | relay -to ADDR [...]")
	}
	id, err := session.GenerateIdentity()
	if err != nil {
		return err
	}
	var crt []byte
	if *caFile != "" {
		ca, err := cert.ReadFile(*caFile)
		if err != nil {
			return err
		}
		if *secret == "" {
			*secret = "weft-ca:" + hex.EncodeToString(ca.PublicKey[:]) // as a node without a network secret
		}
		c, err := cert.ReadFile(*certFile)
		if err != nil {
			return err
		}
		crt = c.Raw()
		if id, err = session.LoadIdentityFile(*keyFile); err != nil {
			return err
		}
	}
	m, err := join(id, *name, *secret, *peerAddr, netip.MustParsePrefix(*ipv4), *hostname, crt, 0x6d616c6c)
	if err != nil {
		return err
	}
	defer m.conn.Close()
	switch flag.Arg(0) {
	case "forge-announce":
		fs := flag.NewFlagSet("forge-announce", flag.ExitOnError)
		victim := fs.String("victim", "", "node ID to forge announcements for")
		fs.Parse(flag.Args()[1:])
		v, err := session.ParseNodeID(*victim)
		if err != nil {
			return err
		}
		n, err := m.forgeAnnounce(v, *count)
		if err != nil {
			return err
		}
		fmt.Println("sent", n)
		return nil
	case "claim-ip":
		fs := flag.NewFlagSet("claim-ip", flag.ExitOnError)
		ip := fs.String("ip", "", "the address to claim, ADDR/PREFIX")
		to := fs.String("to", "", "where to send UDP from it, ADDR:PORT")
		fs.Parse(flag.Args()[1:])
		claimed, err := netip.ParsePrefix(*ip)
		if err != nil {
			return err
		}
		dst, err := netip.ParseAddrPort(*to)
		if err != nil {
			return err
		}
		n, err := m.claimIP(claimed, dst, crt, *count)
		if err != nil {
			return err
		}
		fmt.Println("sent", n)
		return nil
	case "kcp-open":
		fs := flag.NewFlagSet("kcp-open", flag.ExitOnError)
		invent := fs.Bool("invent", false, "claim invented source node IDs")
		fs.Parse(flag.Args()[1:])
		n, err := m.kcpOpen(*count, *invent, netip.MustParsePrefix(*ipv4))
		if err != nil {
			return err
		}
		fmt.Println("sent", n)
		return nil
	case "invent-origins":
		n, err := m.inventOrigins(*count)
		if err != nil {
			return err
		}
		fmt.Println("sent", n)
		return nil
	case "relay":
		fs := flag.NewFlagSet("relay", flag.ExitOnError)
		to := fs.String("to", "", "the second node, ip:port")
		every := fs.Int("tamper-every", 0, "alter every Nth sealed message from the first node to the second (0: none)")
		rewrite := fs.String("rewrite-src", "", "FROM,TO: the IP source rewrite the alteration amounts to")
		injectSrc := fs.String("inject-src", "", "send -count UDP datagrams with this source to the second node")
		injectTo := fs.String("inject-to", "", "their destination, ADDR:PORT")
		fs.Parse(flag.Args()[1:])
		c, err := join(id, *name, *secret, *to, netip.MustParsePrefix(*ipv4), *hostname, crt, 0x6d616c6d)
		if err != nil {
			return err
		}
		defer c.conn.Close()
		r := &relay{a: m, c: c, ip: netip.MustParsePrefix(*ipv4), every: *every}
		if *every > 0 {
			fromS, toS, _ := strings.Cut(*rewrite, ",")
			from, err1 := netip.ParseAddr(fromS)
			to, err2 := netip.ParseAddr(toS)
			if err1 != nil || err2 != nil || !from.Is4() || !to.Is4() {
				return fmt.Errorf("-tamper-every needs -rewrite-src FROM,TO (two IPv4 addresses), got %q", *rewrite)
			}
			f, t := from.As4(), to.As4()
			for i := range r.mask {
				r.mask[i] = f[i] ^ t[i]
			}
		}
		return r.run(*injectSrc, *injectTo, *count)
	}
	return fmt.Errorf("unknown attack %q", flag.Arg(0))
}

// member is a joined session with one node.
type member struct {
	signer *session.Signer
	conn   *net.UDPConn
	kp     *session.Keypair
}

// join runs the handshake with the node at addr, as initiator, with local session index idx.
func join(id session.Identity, name, secret, addr string, ip netip.Prefix, hostname string, crt []byte, idx uint32) (*member, error) {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp4", nil, ua)
	if err != nil {
		return nil, err
	}
	m := &member{signer: id.Signer(), conn: conn}
	cfg := session.Config{Identity: id, PSK: session.DerivePSK(name, secret), Signer: m.signer}
	ini, msg1, err := session.NewInitiator(cfg, idx, nil)
	msg1 = session.WithMAC2(msg1, nil) // the wire form: a mac2 trailer, zero without a cookie
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 65536)
	for try := 0; try < 10; try++ {
		if _, err := conn.Write(msg1); err != nil {
			return nil, err
		}
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			k, err := conn.Read(buf)
			if err != nil {
				break // timeout: send message 1 again
			}
			if t, ok := session.PacketType(buf[:k]); !ok || t != session.TypeHandshakeResp {
				continue
			}
			kp, msg3, _, err := ini.Finish(buf[:k], hello(ip, hostname, crt))
			if err != nil {
				return nil, fmt.Errorf("handshake with %s: %w", addr, err)
			}
			if _, err := conn.Write(msg3); err != nil {
				return nil, err
			}
			m.kp = kp
			conn.SetReadDeadline(time.Time{})
			return m, nil
		}
	}
	return nil, fmt.Errorf("no handshake response from %s", addr)
}

// hello is node/wire.go's handshake payload: version | ipv4 [4] | prefix len | hostname len | hostname
// [| cert len u16 | certificate].
func hello(ip netip.Prefix, hostname string, crt []byte) []byte {
	a := ip.Addr().As4()
	b := append([]byte{helloVersion}, a[:]...)
	b = append(b, byte(ip.Bits()), byte(len(hostname)))
	b = append(b, hostname...)
	if len(crt) > 0 {
		b = binary.BigEndian.AppendUint16(b, uint16(len(crt)))
		b = append(b, crt...)
	}
	return b
}

// send seals one inner message into the session.
func (m *member) send(msg []byte) error {
	pkt, err := m.kp.Seal(nil, msg)
	if err != nil {
		return err
	}
	_, err = m.conn.Write(pkt)
	return err
}

// victimAnnounce waits (up to 5 s) for the node to pass on the victim's real announcement (a node sends
// a new neighbour its whole database) and returns its signed bytes.
func (m *member) victimAnnounce(victim session.NodeID) ([]byte, error) {
	buf := make([]byte, 65536)
	deadline := time.Now().Add(5 * time.Second)
	m.conn.SetReadDeadline(deadline)
	defer m.conn.SetReadDeadline(time.Time{})
	for {
		k, err := m.conn.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("the node did not pass on an announcement of %v within 5 s", victim)
		}
		if t, ok := session.PacketType(buf[:k]); !ok || t != session.TypeData {
			continue
		}
		pt, err := m.kp.Open(nil, buf[:k])
		if err != nil || len(pt) < 1 || pt[0] != msgAnnounce {
			continue
		}
		if a, err := mesh.DecodeAnnounce(pt[1:]); err == nil && a.Origin == victim {
			return append([]byte(nil), pt[1:]...), nil
		}
	}
}

// forgeAnnounce sends count forged announcements for victim, of two kinds, alternating.
func (m *member) forgeAnnounce(victim session.NodeID, count int) (int, error) {
	fake := mesh.Announce{
		// A sequence number above every real one (boot-time ns), so it would supersede the victim's.
		Origin: m.signer.NodeID(), Seq: 1 << 63, Hostname: "forged", IPv4: netip.MustParsePrefix("10.144.144.99/24"),
		Neighbors: []mesh.Neighbor{{ID: m.signer.NodeID(), CostUS: 1}},
	}
	if err := fake.Sign(m.signer); err != nil {
		return 0, err
	}
	// 1: fake links under this member's own valid signature, the origin bytes (1..8) rewritten to the
	// victim's.
	own := append([]byte(nil), fake.Wire()...)
	binary.BigEndian.PutUint64(own[1:9], uint64(victim))
	// 2: the victim's real announcement (its own key and signature), with a huge sequence number, so it
	// would supersede every later one of the victim.
	real, err := m.victimAnnounce(victim)
	if err != nil {
		return 0, err
	}
	binary.BigEndian.PutUint64(real[9:17], 1<<62)
	sent := 0
	for i := 0; i < count; i++ {
		b := own
		if i%2 == 1 {
			b = real
		}
		if err := m.send(append([]byte{msgAnnounce}, b...)); err != nil {
			return sent, err
		}
		sent++
		time.Sleep(2 * time.Millisecond)
	}
	return sent, nil
}

// claimIP announces claimed (with this member's certificate, which does not list it) and sends count
// UDP datagrams from it to dst through the session.
func (m *member) claimIP(claimed netip.Prefix, dst netip.AddrPort, crt []byte, count int) (int, error) {
	a := mesh.Announce{
		Origin: m.signer.NodeID(), Seq: uint64(time.Now().UnixNano()), Hostname: "mallory", IPv4: claimed, Cert: crt,
		Neighbors: []mesh.Neighbor{{ID: m.kp.PeerID(), CostUS: 1000}},
	}
	if err := a.Sign(m.signer); err != nil {
		return 0, err
	}
	if err := m.send(append([]byte{msgAnnounce}, a.Wire()...)); err != nil {
		return 0, err
	}
	time.Sleep(200 * time.Millisecond)
	sent := 0
	for i := 0; i < count; i++ {
		pkt := udpPacket(claimed.Addr(), dst, []byte(fmt.Sprintf("from-%s-%d\n", claimed.Addr(), i)))
		if err := m.send(append([]byte{msgIP, 16}, pkt...)); err != nil {
			return sent, err
		}
		sent++
		time.Sleep(5 * time.Millisecond)
	}
	return sent, nil
}

// udpPacket builds an IPv4/UDP datagram from src:40000 to dst with a valid header checksum (UDP
// checksum 0: none).
func udpPacket(src netip.Addr, dst netip.AddrPort, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 17
	s, d := src.As4(), dst.Addr().As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], 40000)
	binary.BigEndian.PutUint16(p[22:], dst.Port())
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// relay is the rogue relay between two nodes a and c.
type relay struct {
	a, c  *member
	ip    netip.Prefix
	every int     // alter every Nth sealed message from a to c; 0: none
	mask  [4]byte // XORed onto the bytes where a relayed IP packet's source address sits

	sealedAC                      int // sealed messages seen from a to c (reader of a only)
	forwarded, tampered, injected atomic.Int64
}

// Offset of an IP packet's source address in a msgSealed message: the envelope (type, TTL, destination
// node), the e2e session header, the inner message's type and TTL, then 12 bytes of IPv4 header. The
// AEAD's cipher is a stream cipher, so XOR on the ciphertext is XOR on the plaintext: without the tag,
// the destination would read the rewritten address.
const sealedSrcOffset = 10 + session.DataHeaderLen + 2 + 12

func (r *relay) run(injectSrc, injectTo string, count int) error {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go r.pump(r.a, r.c, true, done)
	go r.pump(r.c, r.a, false, done)
	go r.announce(done)
	fmt.Println("relaying")
	if injectSrc != "" {
		src, err := netip.ParseAddr(injectSrc)
		if err != nil {
			return err
		}
		dst, err := netip.ParseAddrPort(injectTo)
		if err != nil {
			return err
		}
		// Inject once told to (SIGUSR1): the test sends it when both nodes know each other's routes, so
		// that the second node knows whose address the forged source is.
		go1 := make(chan os.Signal, 1)
		signal.Notify(go1, syscall.SIGUSR1)
		select {
		case <-go1:
		case sig := <-stop:
			stop <- sig
		}
		for i := 0; i < count; i++ {
			pkt := udpPacket(src, dst, []byte(fmt.Sprintf("injected-%d\n", i)))
			if err := r.c.send(append([]byte{msgIP, 16}, pkt...)); err != nil {
				return err
			}
			r.injected.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
		fmt.Println("injected", r.injected.Load())
	}
	<-stop
	close(done)
	fmt.Printf("forwarded %d tampered %d injected %d\n", r.forwarded.Load(), r.tampered.Load(), r.injected.Load())
	return nil
}

// announce sends both nodes this relay's signed announcement (itself the neighbour of both), every
// second, which also keeps both sessions alive.
func (r *relay) announce(done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		a := mesh.Announce{
			Origin: r.a.signer.NodeID(), Seq: uint64(time.Now().UnixNano()), Hostname: "rogue", IPv4: r.ip,
			Neighbors: []mesh.Neighbor{{ID: r.a.kp.PeerID(), CostUS: 1000}, {ID: r.c.kp.PeerID(), CostUS: 1000}},
		}
		if err := a.Sign(r.a.signer); err == nil {
			msg := append([]byte{msgAnnounce}, a.Wire()...)
			r.a.send(msg)
			r.c.send(msg)
		}
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// pump reads what node from sends this relay and acts on it: pings are answered, announcements passed
// on to the other node, end-to-end messages for it relayed (and, from a to c, altered).
func (r *relay) pump(from, to *member, aToC bool, done <-chan struct{}) {
	buf := make([]byte, 65536)
	dst := uint64(to.kp.PeerID())
	for {
		select {
		case <-done:
			return
		default:
		}
		from.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		k, err := from.conn.Read(buf)
		if err != nil {
			continue
		}
		if t, ok := session.PacketType(buf[:k]); !ok || t != session.TypeData {
			continue // a rekey this relay does not answer: the test is shorter than a key's life
		}
		pt, err := from.kp.Open(nil, buf[:k])
		if err != nil || len(pt) < 1 {
			continue
		}
		switch pt[0] {
		case msgPing:
			if len(pt) == 13 {
				pt[0] = msgPong
				from.send(pt)
			}
		case msgAnnounce:
			to.send(pt)
		case msgSealed, msgRoutedHandshake:
			if len(pt) < 10 || binary.BigEndian.Uint64(pt[2:10]) != dst || pt[1] <= 1 {
				continue
			}
			pt[1]--
			if pt[0] == msgSealed && aToC && r.every > 0 && len(pt) >= sealedSrcOffset+4+session.TagLen {
				r.sealedAC++
				if r.sealedAC%r.every == 0 {
					for i, m := range r.mask {
						pt[sealedSrcOffset+i] ^= m
					}
					r.tampered.Add(1)
				}
			}
			if to.send(pt) == nil {
				r.forwarded.Add(1)
			}
		}
	}
}

// flood runs one of the attacks that need no session.
func flood(mode string, args []string, name, secret string) error {
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	to := fs.String("to", "", "the node, ip:port")
	rate := fs.Int("rate", 1000, "packets per second")
	ports := fs.Int("ports", 1, "source ports to send from, in turn")
	seconds := fs.Float64("seconds", 10, "how long")
	conns := fs.Int("conns", 500, "TCP connections")
	srcs := fs.String("srcs", "", "flood-init: FIRST,COUNT source addresses")
	fs.Parse(args)
	dst, err := net.ResolveUDPAddr("udp4", *to)
	if err != nil {
		return err
	}
	dur := time.Duration(*seconds * float64(time.Second))
	switch mode {
	case "flood-unknown":
		socks := make([]*net.UDPConn, *ports)
		for i := range socks {
			if socks[i], err = net.DialUDP("udp4", nil, dst); err != nil {
				return err
			}
			defer socks[i].Close()
		}
		var replies atomic.Int64
		for _, c := range socks {
			go countReplies(c, session.TypeHandshakeInit, &replies)
		}
		pkt := make([]byte, session.DataHeaderLen+session.TagLen+16)
		pkt[0] = session.TypeData
		sent := pace(*rate, dur, func(i int) {
			binary.BigEndian.PutUint32(pkt[4:8], uint32(i)*2654435761+1) // receiver index nobody has
			binary.BigEndian.PutUint64(pkt[8:16], uint64(i))
			socks[i%len(socks)].Write(pkt)
		})
		time.Sleep(500 * time.Millisecond) // answers still on their way
		fmt.Println("sent", sent, "replies", replies.Load())
		return nil
	case "replay-init":
		id, err := session.GenerateIdentity()
		if err != nil {
			return err
		}
		cfg := session.Config{Identity: id, PSK: session.DerivePSK(name, secret)}
		_, msg1, err := session.NewInitiator(cfg, 0x72706c79, nil)
		if err != nil {
			return err
		}
		msg1 = session.WithMAC2(msg1, nil)
		c, err := net.DialUDP("udp4", nil, dst)
		if err != nil {
			return err
		}
		defer c.Close()
		var answers atomic.Int64
		go countReplies(c, session.TypeHandshakeResp, &answers)
		c.Write(msg1) // the genuine one, answered
		time.Sleep(200 * time.Millisecond)
		sent := pace(*rate, dur, func(int) { c.Write(msg1) })
		time.Sleep(500 * time.Millisecond)
		fmt.Println("sent", sent, "answered", answers.Load())
		return nil
	case "flood-init":
		first, nStr, _ := strings.Cut(*srcs, ",")
		a, err := netip.ParseAddr(first)
		var n int
		if _, err2 := fmt.Sscan(nStr, &n); err != nil || err2 != nil || n < 1 {
			return fmt.Errorf("-srcs %q: want FIRST,COUNT", *srcs)
		}
		socks := make([]*net.UDPConn, n)
		for i := range socks {
			if socks[i], err = net.DialUDP("udp4", &net.UDPAddr{IP: a.AsSlice()}, dst); err != nil {
				return err
			}
			defer socks[i].Close()
			a = a.Next()
		}
		var cookies, answers atomic.Int64
		for _, c := range socks {
			go countTypes(c, map[byte]*atomic.Int64{session.TypeCookieReply: &cookies, session.TypeHandshakeResp: &answers})
		}
		id, err := session.GenerateIdentity()
		if err != nil {
			return err
		}
		cfg := session.Config{Identity: id, PSK: session.DerivePSK(name, secret)}
		sent := pace(*rate, dur, func(i int) {
			if _, msg1, err := session.NewInitiator(cfg, uint32(i)+1, nil); err == nil {
				socks[i%len(socks)].Write(session.WithMAC2(msg1, nil))
			}
		})
		time.Sleep(500 * time.Millisecond)
		fmt.Println("sent", sent, "cookies", cookies.Load(), "answers", answers.Load())
		return nil
	case "tcp-idle":
		type held struct {
			c      net.Conn
			opened time.Time
		}
		var mu sync.Mutex
		opened, closed := 0, 0
		var longest time.Duration
		var wg sync.WaitGroup
		for i := 0; i < *conns; i++ {
			c, err := net.DialTimeout("tcp4", *to, 2*time.Second)
			if err != nil {
				continue
			}
			opened++
			h := held{c, time.Now()}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer h.c.Close()
				h.c.SetReadDeadline(h.opened.Add(dur))
				var b [1]byte
				_, err := h.c.Read(b[:])
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					return // still open at the end
				}
				mu.Lock()
				closed++
				longest = max(longest, time.Since(h.opened))
				mu.Unlock()
			}()
		}
		wg.Wait()
		fmt.Println("opened", opened, "closed", closed, "longest-ms", longest.Milliseconds())
		return nil
	}
	return fmt.Errorf("unknown flood %q", mode)
}

// pace calls send(i) rate times a second for d, in bursts every millisecond, and returns how many.
func pace(rate int, d time.Duration, send func(i int)) int {
	start := time.Now()
	sent := 0
	for el := time.Duration(0); el < d; el = time.Since(start) {
		due := int(el.Seconds() * float64(rate))
		for ; sent < due; sent++ {
			send(sent)
		}
		time.Sleep(time.Millisecond)
	}
	return sent
}

// countReplies counts the packets of type typ that arrive on c until it is closed.
func countReplies(c *net.UDPConn, typ byte, n *atomic.Int64) {
	countTypes(c, map[byte]*atomic.Int64{typ: n})
}

// countTypes counts the packets that arrive on c, for each type in counts, until c is closed.
func countTypes(c *net.UDPConn, counts map[byte]*atomic.Int64) {
	buf := make([]byte, 2048)
	for {
		k, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors surface as read errors on a connected socket
		}
		if t, ok := session.PacketType(buf[:k]); ok && counts[t] != nil {
			counts[t].Add(1)
		}
	}
}

// inventOrigins sends count announcements, each for a freshly invented node.
func (m *member) inventOrigins(count int) (int, error) {
	seq := uint64(time.Now().UnixNano())
	for i := 0; i < count; i++ {
		id, err := session.GenerateIdentity()
		if err != nil {
			return i, err
		}
		signer := id.Signer()
		a := mesh.Announce{
			Origin: signer.NodeID(), Seq: seq, Hostname: fmt.Sprintf("invented-%d", i),
			IPv4:      netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 144, 144, byte(100 + i%150)}), 24),
			Neighbors: []mesh.Neighbor{{ID: m.signer.NodeID(), CostUS: 1000}},
		}
		if err := a.Sign(signer); err != nil {
			return i, err
		}
		if err := m.send(append([]byte{msgAnnounce}, a.Wire()...)); err != nil {
			return i, err
		}
		if i%64 == 63 {
			time.Sleep(time.Millisecond) // do not overrun the node's socket buffer
		}
	}
	return count, nil
}

// kcpOpen sends count segments, each the first KCP packet (push, sequence 0, acknowledging nothing)
// of a new conversation to the node, from this member or (invent) from invented node IDs.
func (m *member) kcpOpen(count int, invent bool, ip netip.Prefix) (int, error) {
	// Announce this member, so the node can answer its conversations (an unroutable one dies at once).
	a := mesh.Announce{
		Origin: m.signer.NodeID(), Seq: uint64(time.Now().UnixNano()), Hostname: "mallory", IPv4: ip,
		Neighbors: []mesh.Neighbor{{ID: m.kp.PeerID(), CostUS: 1000}},
	}
	if err := a.Sign(m.signer); err != nil {
		return 0, err
	}
	if err := m.send(append([]byte{msgAnnounce}, a.Wire()...)); err != nil {
		return 0, err
	}
	go m.keepAlive()        // answer the node's pings, or it drops the session before the conversations end
	time.Sleep(time.Second) // the node routes to this member once it recomputed (within 50 ms)
	dst := uint64(m.kp.PeerID())
	for i := 0; i < count; i++ {
		src := uint64(m.signer.NodeID())
		if invent {
			src = 0x1000000 + uint64(i)*7919
		}
		msg := []byte{msgKCP, 16}
		msg = binary.BigEndian.AppendUint64(msg, dst)
		msg = binary.BigEndian.AppendUint64(msg, src)
		msg = append(msg, 1) // segToAcceptor: a conversation the sender opened
		kcp := make([]byte, 24+4)
		binary.LittleEndian.PutUint32(kcp[0:], uint32(i+1)) // conversation id
		kcp[4] = 81                                         // push
		binary.LittleEndian.PutUint16(kcp[6:], 128)         // window
		binary.LittleEndian.PutUint32(kcp[20:], 4)          // payload length
		copy(kcp[24:], []byte{1, 0, 20, 1})                 // the start of an open frame whose rest never comes
		if err := m.send(append(msg, kcp...)); err != nil {
			return i, err
		}
		if i%64 == 63 {
			time.Sleep(time.Millisecond)
		}
	}
	return count, nil
}

// keepAlive answers the node's pings on the member's session until the process exits.
func (m *member) keepAlive() {
	buf := make([]byte, 65536)
	for {
		k, err := m.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if t, ok := session.PacketType(buf[:k]); !ok || t != session.TypeData {
			continue
		}
		if pt, err := m.kp.Open(nil, buf[:k]); err == nil && len(pt) == 13 && pt[0] == msgPing {
			pt[0] = msgPong
			m.send(pt)
		}
	}
}
