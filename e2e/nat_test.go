package e2e

// NAT traversal in namespaces. The lab: an "internet" router joining a public relay node, a public
// node and two home routers; each router masquerades its LAN with nftables in one of four profiles and
// drops unsolicited packets from its WAN:
//
//	relay 203.0.113.2 ─┐                ┌─ ra 198.51.100.2 (NAT) ── a 192.168.1.2
//	pub   203.0.113.6 ─┼─ inet (router) ┼─ rb 198.51.100.6 (NAT) ── b 192.168.2.2
//	                   │                └─ (b2 192.168.1.3 behind ra, for the same-router case)
//
// a and b dial only the relay; whether they end up direct is up to NAT traversal.

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/control"
	"github.com/weft-vpn/weft/internal/netlab"
)

// NAT profiles of a home router.
const (
	natPortRestricted = "port-restricted" // masquerade: endpoint-independent mapping, port-restricted filter
	natSymmetric      = "symmetric"       // masquerade random: a new port per destination
	natFullCone       = "full-cone"       // masquerade plus a dynamic dnat map from the mapped port
	natRestricted     = "restricted"      // full cone, but only from addresses the LAN has sent to
)

// natRules returns the nftables script of a router with WAN interface wan and LAN lan.
func natRules(profile, wan, lan string, udpTimeout time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip natlab {\n")
	if udpTimeout > 0 {
		fmt.Fprintf(&b, "  ct timeout udpshort { protocol udp; policy = { unreplied: %d, replied: %d }; }\n",
			int(udpTimeout.Seconds()), int(udpTimeout.Seconds()))
	}
	fmt.Fprintf(&b, "  map fullcone { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout 2m; }\n")
	fmt.Fprintf(&b, "  set contacted { type ipv4_addr; flags dynamic,timeout; timeout 2m; }\n")
	// Outgoing: remember the mapping (the router keeps the source port: masquerade without random).
	fmt.Fprintf(&b, "  chain remember { type filter hook prerouting priority -300; policy accept;\n")
	if udpTimeout > 0 {
		fmt.Fprintf(&b, "    meta l4proto udp ct timeout set \"udpshort\"\n")
	}
	if profile == natFullCone || profile == natRestricted {
		fmt.Fprintf(&b, "    iifname %q meta l4proto udp update @fullcone { udp sport timeout 2m : ip saddr . udp sport }\n", lan)
		fmt.Fprintf(&b, "    iifname %q update @contacted { ip daddr timeout 2m }\n", lan)
	}
	fmt.Fprintf(&b, "  }\n")
	fmt.Fprintf(&b, "  chain prenat { type nat hook prerouting priority dstnat; policy accept;\n")
	if profile == natFullCone || profile == natRestricted {
		rule := fmt.Sprintf("    iifname %q meta l4proto udp ct state new", wan)
		if profile == natRestricted {
			rule += " ip saddr @contacted"
		}
		fmt.Fprintf(&b, "%s dnat ip to udp dport map @fullcone\n", rule)
	}
	fmt.Fprintf(&b, "  }\n")
	fmt.Fprintf(&b, "  chain postnat { type nat hook postrouting priority srcnat; policy accept;\n")
	if profile == natSymmetric {
		fmt.Fprintf(&b, "    oifname %q masquerade random\n", wan)
	} else {
		fmt.Fprintf(&b, "    oifname %q masquerade\n", wan)
	}
	fmt.Fprintf(&b, "  }\n")
	// Unsolicited packets from the WAN never reach the LAN (nor the router).
	fmt.Fprintf(&b, "  chain forwardf { type filter hook forward priority filter; policy accept;\n")
	fmt.Fprintf(&b, "    iifname %q ct state established,related accept\n", wan)
	fmt.Fprintf(&b, "    iifname %q ct status dnat accept\n", wan)
	fmt.Fprintf(&b, "    iifname %q counter drop\n", wan)
	fmt.Fprintf(&b, "  }\n")
	fmt.Fprintf(&b, "  chain inputf { type filter hook input priority filter; policy accept;\n")
	fmt.Fprintf(&b, "    iifname %q ct state established,related accept\n", wan)
	fmt.Fprintf(&b, "    iifname %q meta l4proto icmp accept\n", wan)
	fmt.Fprintf(&b, "    iifname %q drop\n", wan)
	fmt.Fprintf(&b, "  }\n}\n")
	return b.String()
}

// natLab is the lab above.
type natLab struct {
	lab                *netlab.Lab
	inet, relay, pub   *netlab.Host
	ra, rb, a, b, a2   *netlab.Host
	relayNode          *weftNode
	relayAddr          string
	aProfile, bProfile string
	raWAN, rbWAN       netip.Addr
}

var (
	natRelayIP = netip.MustParseAddr("203.0.113.2")
	natPubIP   = netip.MustParseAddr("203.0.113.6")
)

// newNATLab builds the namespaces, the routers with their NAT profiles (a behind ra, b behind rb;
// "" leaves a or b out; "public" puts that node on the internet side instead) and starts the relay.
func newNATLab(t *testing.T, aProfile, bProfile string, udpTimeout time.Duration) *natLab {
	t.Helper()
	l := &natLab{lab: netlab.New(t), aProfile: aProfile, bProfile: bProfile}
	l.inet = l.lab.Host("inet")
	l.relay = l.lab.Host("relay")
	l.inet.Sysctl(t, "net.ipv4.ip_forward", "1")
	pfx := netip.MustParsePrefix
	l.lab.Link(l.inet, "i-relay", pfx("203.0.113.1/30"), l.relay, "eth0", pfx("203.0.113.2/30"))
	l.relay.Run(t, "ip", "route", "add", "default", "via", "203.0.113.1")
	home := func(name, router string, wanNet, lanNet byte, profile string) (*netlab.Host, *netlab.Host, netip.Addr) {
		if profile == "" {
			return nil, nil, netip.Addr{}
		}
		h := l.lab.Host(name)
		if profile == "public" {
			base := 8 + 4*int(wanNet) // the relay has 203.0.113.0/30
			l.lab.Link(l.inet, "i-"+name, pfx(fmt.Sprintf("203.0.113.%d/30", base+1)), h, "eth0", pfx(fmt.Sprintf("203.0.113.%d/30", base+2)))
			h.Run(t, "ip", "route", "add", "default", "via", fmt.Sprintf("203.0.113.%d", base+1))
			return nil, h, netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", base+2))
		}
		r := l.lab.Host(router)
		wan := netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", 4*wanNet+2))
		l.lab.Link(l.inet, "i-"+router, pfx(fmt.Sprintf("198.51.100.%d/30", 4*wanNet+1)), r, "wan", netip.PrefixFrom(wan, 30))
		l.lab.Link(r, "lan", pfx(fmt.Sprintf("192.168.%d.1/24", lanNet)), h, "eth0", pfx(fmt.Sprintf("192.168.%d.2/24", lanNet)))
		r.Sysctl(t, "net.ipv4.ip_forward", "1")
		r.Run(t, "ip", "route", "add", "default", "via", fmt.Sprintf("198.51.100.%d", 4*wanNet+1))
		h.Run(t, "ip", "route", "add", "default", "via", fmt.Sprintf("192.168.%d.1", lanNet))
		nftApply(t, r, natRules(profile, "wan", "lan", udpTimeout))
		return r, h, wan
	}
	l.ra, l.a, l.raWAN = home("a", "ra", 0, 1, aProfile)
	l.rb, l.b, l.rbWAN = home("b", "rb", 1, 2, bProfile)
	l.relayAddr = "udp://" + natRelayIP.String() + ":11010"
	// The relay listens on a second port too, so the nodes behind NATs can tell how they map.
	l.relayNode = startNode(t, l.relay, "relay", nodeOpts{ip: "10.144.144.1/24", listen: []string{"udp://0.0.0.0:11010", "udp://0.0.0.0:11011"}})
	return l
}

// nftApply loads an nftables script in host h.
func nftApply(t *testing.T, h *netlab.Host, script string) {
	t.Helper()
	cmd := h.Command(t.Context(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft on %s: %v\n%s\nscript:\n%s", h.Name(), err, out, script)
	}
}

// startBehind starts a node on host h dialling the relay.
func (l *natLab) startBehind(t *testing.T, h *netlab.Host, name, ip string, extra ...string) *weftNode {
	t.Helper()
	return startNode(t, h, name, nodeOpts{ip: ip, peers: []string{l.relayAddr}, extra: extra})
}

// pathTo returns how n reaches ip now.
func pathTo(n *weftNode, ip netip.Addr) control.Peer {
	p, _ := n.peer(ip)
	return p
}

// waitDirect waits until both nodes list each other as direct and returns how long it took.
func waitDirect(t *testing.T, x, y *weftNode, timeout time.Duration) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if pathTo(x, y.ip).Direct && pathTo(y, x.ip).Direct {
			return time.Since(start), true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start), false
}

// waitKnown waits until x and y have routes to each other (through the relay).
func waitKnown(t *testing.T, x, y *weftNode) {
	t.Helper()
	netlab.Eventually(t, 15*time.Second, func() bool {
		_, ok1 := x.peer(y.ip)
		_, ok2 := y.peer(x.ip)
		return ok1 && ok2
	}, "%s and %s never learned each other's routes through the relay", x.name, y.name)
}

// percentile is the nearest-rank percentile p (0..1] of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(float64(len(s))*p)) - 1
	return s[max(i, 0)]
}

// TestNATPunchCones: every pair among full cone, restricted cone and port-restricted cone, and a
// public node with each, goes direct in every run, p95 within 5 s of both knowing each other's route;
// traffic between them then takes the direct path (the relay forwards none of it).
func TestNATPunchCones(t *testing.T) {
	pairs := [][2]string{
		{natPortRestricted, natPortRestricted}, {natFullCone, natFullCone}, {natRestricted, natRestricted},
		{natFullCone, natPortRestricted}, {natRestricted, natPortRestricted}, {natFullCone, natRestricted},
		{"public", natPortRestricted}, {"public", natFullCone}, {"public", natRestricted}, {"public", natSymmetric},
	}
	const runs = 3
	for _, pr := range pairs {
		t.Run(pr[0]+"_x_"+pr[1], func(t *testing.T) {
			var times []time.Duration
			for run := range runs {
				d := punchRun(t, pr[0], pr[1], run == 0)
				times = append(times, d)
			}
			t.Logf("%s x %s: direct in %d/%d runs, time to direct p50 %v, p95 %v", pr[0], pr[1], len(times), runs,
				percentile(times, 0.5).Round(time.Millisecond), percentile(times, 0.95).Round(time.Millisecond))
			if p95 := percentile(times, 0.95); p95 > 5*time.Second {
				t.Errorf("p95 time to direct %v, want <= 5s", p95)
			}
		})
	}
}

// punchPair builds a fresh lab, starts a and b behind their routers, and returns them with how long
// after both knew each other's route they went direct (failing the test when they do not within 15 s).
func punchPair(t *testing.T, aProfile, bProfile string) (*natLab, *weftNode, *weftNode, time.Duration) {
	t.Helper()
	l := newNATLab(t, aProfile, bProfile, 0)
	a := l.startBehind(t, l.a, "a", "10.144.144.2/24")
	b := l.startBehind(t, l.b, "b", "10.144.144.3/24")
	waitKnown(t, a, b)
	d, ok := waitDirect(t, a, b, 15*time.Second)
	if !ok {
		t.Fatalf("%s x %s: not direct after %v: a sees b %+v; b sees a %+v\na: %+v\nb: %+v\nroutes: a %+v, b %+v, relay %+v\na's log:\n%s\nb's log:\n%s",
			aProfile, bProfile, d, pathTo(a, b.ip), pathTo(b, a.ip), a.status(), b.status(), a.routes(), b.routes(),
			l.relayNode.routes(), a.proc.Log(), b.proc.Log())
	}
	return l, a, b, d
}

// punchRun is punchPair, then (with checkTraffic) a check that traffic takes the direct path and that
// weft peers and the metrics tell it.
func punchRun(t *testing.T, aProfile, bProfile string, checkTraffic bool) time.Duration {
	t.Helper()
	l, a, b, d := punchPair(t, aProfile, bProfile)
	if checkTraffic {
		// 100 pings in a second from a to b: through the relay they would be 200 more datagrams
		// arriving at it; keepalives and announcements are a few a second.
		wans := l.raWAN.String() + ", " + l.rbWAN.String()
		arrived := inputCounters(t, l.relay, "natcount", map[string][]string{"fromhomes": {"ip", "saddr", "{ " + wans + " }", "udp", "dport", "11010"}})
		mustPing(t, l.a, b.ip, 5*time.Second)
		before := arrived("fromhomes")
		l.a.Run(t, "ping", "-c", "100", "-i", "0.01", "-q", b.ip.String())
		if got := arrived("fromhomes") - before; got > 40 {
			t.Errorf("%d datagrams from a's and b's routers reached the relay during 100 pings a->b: the pings went through it", got)
		}
		// Both list the path as direct; the side whose handshake got through measured the time it took
		// (the other may have learned of the session first and never punched).
		pa, pb := pathTo(a, b.ip), pathTo(b, a.ip)
		if pa.Path != "direct" || pb.Path != "direct" || pa.PunchAttempts+pb.PunchAttempts < 1 || max(pa.TimeToDirectMS, pb.TimeToDirectMS) <= 0 {
			t.Errorf("weft peers: a for b: path %q, %d punch attempts, time to direct %.1f ms; b for a: %q, %d, %.1f ms",
				pa.Path, pa.PunchAttempts, pa.TimeToDirectMS, pb.Path, pb.PunchAttempts, pb.TimeToDirectMS)
		}
		// The same in the metrics.
		metrics, err := hostCmd("curl", "-s", "--unix-socket", b.sock, "http://weft/metrics")
		if err != nil {
			t.Fatalf("b's metrics: %v", err)
		}
		for _, want := range []string{`weft_peer_punch_attempts_total{hostname="a"`, `weft_peer_time_to_direct_seconds{hostname="a"`, `weft_nat_type{type="`} {
			if !strings.Contains(metrics, want) {
				t.Errorf("b's /metrics lacks %s", want)
			}
		}
	}
	return d
}

// TestNATPunchSymmetric: a symmetric NAT maps each destination to a new port, so its announced mapping
// is useless to the other side; against a full or restricted cone the other side's handshake still
// gets in, and the answer goes to the address it came from (peer-reflexive): direct. Against a
// port-restricted cone or another symmetric NAT (no birthday mode), the pair stays on the relay, its
// traffic flows, and the attempts back off.
func TestNATPunchSymmetric(t *testing.T) {
	for _, pr := range [][2]string{{natFullCone, natSymmetric}, {natRestricted, natSymmetric}} {
		t.Run(pr[0]+"_x_"+pr[1], func(t *testing.T) {
			var times []time.Duration
			for range 3 {
				l, a, b, d := punchPair(t, pr[0], pr[1])
				times = append(times, d)
				// a talks to b at the address b's packets to a came from: a mapping of its own, not the one
				// the relay sees (peer-reflexive).
				pa, atRelay := pathTo(a, b.ip), pathTo(l.relayNode, b.ip)
				if pa.Endpoint == "" || pa.Endpoint == atRelay.Endpoint {
					t.Errorf("a reaches b at %q, the relay at %q: want a mapping of b's NAT for a alone", pa.Endpoint, atRelay.Endpoint)
				}
				mustPing(t, l.a, b.ip, 5*time.Second)
				if nat := b.status().NAT; nat != "symmetric" {
					t.Errorf("b's NAT type %q with sessions to the relay and to a, want symmetric", nat)
				}
			}
			t.Logf("%s x %s: direct in %d/3 runs (peer-reflexive), time to direct p50 %v, p95 %v", pr[0], pr[1], len(times),
				percentile(times, 0.5).Round(time.Millisecond), percentile(times, 0.95).Round(time.Millisecond))
		})
	}
	for _, pr := range [][2]string{{natSymmetric, natSymmetric}, {natPortRestricted, natSymmetric}} {
		t.Run(pr[0]+"_x_"+pr[1], func(t *testing.T) {
			l := newNATLab(t, pr[0], pr[1], 0)
			a := l.startBehind(t, l.a, "a", "10.144.144.2/24")
			b := l.startBehind(t, l.b, "b", "10.144.144.3/24")
			waitKnown(t, a, b)
			// Two attempts: the first at once, the second one window plus the first backoff later.
			const watch = punchWindow + punchRetry + 3*time.Second
			deadline := time.Now().Add(watch)
			for time.Now().Before(deadline) {
				if pathTo(a, b.ip).Direct || pathTo(b, a.ip).Direct {
					t.Fatalf("went direct through a %s and a %s NAT: a sees b %+v", pr[0], pr[1], pathTo(a, b.ip))
				}
				time.Sleep(500 * time.Millisecond)
			}
			mustPing(t, l.a, b.ip, 5*time.Second)
			pa, pb := pathTo(a, b.ip), pathTo(b, a.ip)
			if pa.Path == "direct" || pa.NextHop != "10.144.144.1" || pa.PunchAttempts < 2 || pa.PunchFailures < 1 {
				t.Errorf("a for b after %v: path %q via %s, %d attempts, %d failed (want relayed via 10.144.144.1, 2 attempts, 1+ failed)",
					watch, pa.Path, pa.NextHop, pa.PunchAttempts, pa.PunchFailures)
			}
			t.Logf("%s x %s: relayed, ping through the relay; a: %d attempts (%d failed), b: %d (%d failed) in %v",
				pr[0], pr[1], pa.PunchAttempts, pa.PunchFailures, pb.PunchAttempts, pb.PunchFailures, watch)
		})
	}
}

// The path state machine's timers (internal/punch defaults), as the tests count on them.
const (
	punchWindow = 5 * time.Second
	punchRetry  = 5 * time.Second
)

// TestNATNoPunch: with --no-punch on both, two port-restricted cones stay on the relay.
func TestNATNoPunch(t *testing.T) {
	l := newNATLab(t, natPortRestricted, natPortRestricted, 0)
	a := l.startBehind(t, l.a, "a", "10.144.144.2/24", "--no-punch")
	b := l.startBehind(t, l.b, "b", "10.144.144.3/24", "--no-punch")
	waitKnown(t, a, b)
	mustPing(t, l.a, b.ip, 5*time.Second)
	time.Sleep(3 * time.Second)
	if pa := pathTo(a, b.ip); pa.Direct || pa.PunchAttempts != 0 || a.status().Punch {
		t.Fatalf("--no-punch: a for b %+v, status punch %v", pa, a.status().Punch)
	}
}

// TestNATSameRouter: two nodes behind one router (on two of its LANs) go direct on their LAN
// addresses, not through the router's public mapping.
func TestNATSameRouter(t *testing.T) {
	l := newNATLab(t, natPortRestricted, "", 0)
	pfx := netip.MustParsePrefix
	l.a2 = l.lab.Host("a2")
	l.lab.Link(l.ra, "lan2", pfx("192.168.3.1/24"), l.a2, "eth0", pfx("192.168.3.2/24"))
	l.a2.Run(t, "ip", "route", "add", "default", "via", "192.168.3.1")
	a := l.startBehind(t, l.a, "a", "10.144.144.2/24")
	a2 := l.startBehind(t, l.a2, "a2", "10.144.144.4/24")
	waitKnown(t, a, a2)
	d, ok := waitDirect(t, a, a2, 15*time.Second)
	if !ok {
		t.Fatalf("not direct after %v: a sees a2 %+v", d, pathTo(a, a2.ip))
	}
	if ep := pathTo(a, a2.ip).Endpoint; !strings.HasPrefix(ep, "192.168.3.2:") {
		t.Errorf("a reaches a2 at %s, want its LAN address 192.168.3.2", ep)
	}
	t.Logf("same router: direct on the LAN in %v", d.Round(time.Millisecond))
}

// TestNATFailover: a direct pair whose NAT mapping is flushed (conntrack -F) and blocked goes back to
// the relay within 10 s, without resetting a proxied TCP flow; when the block is lifted it is direct
// again.
func TestNATFailover(t *testing.T) {
	l := newNATLab(t, natPortRestricted, natPortRestricted, 0)
	a := l.startBehind(t, l.a, "a", "10.144.144.2/24", "--tcp-proxy", "kcp")
	b := l.startBehind(t, l.b, "b", "10.144.144.3/24", "--tcp-proxy", "kcp")
	waitKnown(t, a, b)
	if d, ok := waitDirect(t, a, b, 15*time.Second); !ok {
		t.Fatalf("not direct after %v", d)
	}
	server := startProbe(t, l.b, "hold-server", b.ip.String()+":7900")
	push := l.a.Start(t, probeBin, "push", b.ip.String()+":7900")
	push.WaitLog(t, "connected", 10*time.Second)
	if fs := a.proxyFlows(); len(fs) != 1 {
		t.Fatalf("the pushed flow is not listed by a's proxy: %+v", fs)
	}
	flowed := flowUp(t, a)
	// On the punched path the proxy keeps the addresses as on any other: b's server sees a's virtual IP
	// as the client, and b's proxy re-originated the flow.
	if ss := l.b.Run(t, "ss", "-tnH", "state", "established", "( sport = :7900 )"); !strings.Contains(ss, a.ip.String()+":") {
		t.Errorf("b's server socket does not see a's virtual IP %s as the client:\n%s", a.ip, ss)
	}
	if fs := b.proxyFlows(); len(fs) != 1 || !strings.HasPrefix(fs[0].Src, a.ip.String()+":") {
		t.Errorf("b's proxy flows %+v, want the one flow from %s", fs, a.ip)
	}

	// Everything between a's router and b's is dropped; the relay stays reachable for both.
	block := fmt.Sprintf("table ip natblock {\n chain f { type filter hook forward priority -10; policy accept;\n"+
		"  ip daddr %s drop\n  ip saddr %s drop\n }\n}\n", l.rbWAN, l.rbWAN)
	nftApply(t, l.ra, block)
	l.ra.Run(t, "conntrack", "-F")
	start := time.Now()
	netlab.Eventually(t, 10*time.Second, func() bool { return canPing(l.a, b.ip) && !pathTo(a, b.ip).Direct },
		"a did not reach b through the relay within 10 s of its NAT mapping being flushed and blocked")
	failover := time.Since(start)
	if p := pathTo(a, b.ip); p.NextHop != "10.144.144.1" {
		t.Errorf("after the block: a reaches b via %s, want the relay 10.144.144.1", p.NextHop)
	}
	netlab.Eventually(t, 10*time.Second, func() bool { return flowUp(t, a) > flowed+1<<20 },
		"the proxied flow moved no data over the relay")

	l.ra.Run(t, "nft", "delete", "table", "ip", "natblock")
	back, ok := waitDirect(t, a, b, 40*time.Second)
	if !ok {
		t.Fatalf("not direct again %v after the block was lifted: a sees b %+v", back, pathTo(a, b.ip))
	}
	if code, err := push.Wait(0); err == nil {
		t.Fatalf("the proxied flow ended while the path changed (push exited %d):\n%s", code, push.Log())
	}
	// The one flow is still there and still moving, on the direct path again.
	before := flowUp(t, a)
	netlab.Eventually(t, 10*time.Second, func() bool { return flowUp(t, a) > before+1<<20 },
		"the proxied flow moved no more data once direct again (bytes up %d)", before)
	if s := server.Log(); strings.Contains(s, "server: ") {
		t.Errorf("the server's connection ended while the path changed:\n%s", s)
	}
	t.Logf("failover to the relay %v after the mapping was flushed; direct again %v after the block was lifted; the proxied flow carried on",
		failover.Round(time.Millisecond), back.Round(time.Millisecond))
}

// TestNATIdleKeepsMapping: behind a router whose UDP mappings time out after 20 s, a direct pair idle
// for 60 s is still direct (the keepalives keep the mapping).
func TestNATIdleKeepsMapping(t *testing.T) {
	l := newNATLab(t, natPortRestricted, natPortRestricted, 0)
	for _, r := range []*netlab.Host{l.ra, l.rb} {
		r.Sysctl(t, "net.netfilter.nf_conntrack_udp_timeout", "20")
		r.Sysctl(t, "net.netfilter.nf_conntrack_udp_timeout_stream", "20")
	}
	a := l.startBehind(t, l.a, "a", "10.144.144.2/24")
	b := l.startBehind(t, l.b, "b", "10.144.144.3/24")
	waitKnown(t, a, b)
	if d, ok := waitDirect(t, a, b, 15*time.Second); !ok {
		t.Fatalf("not direct after %v", d)
	}
	hs := pathTo(a, b.ip).LastHandshake
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Second) {
		if !pathTo(a, b.ip).Direct {
			t.Fatalf("the direct path was lost while idle behind 20 s UDP timeouts: %+v", pathTo(a, b.ip))
		}
	}
	if p := pathTo(a, b.ip); p.LastHandshake == nil || hs == nil || !p.LastHandshake.Equal(*hs) {
		t.Errorf("the session was replaced while idle (last handshake %v, was %v)", p.LastHandshake, hs)
	}
	mustPing(t, l.a, b.ip, 5*time.Second)
}

// flowUp is the client-to-server bytes of the one flow n's proxy lists (0 when there is none).
func flowUp(t *testing.T, n *weftNode) uint64 {
	t.Helper()
	fs := n.proxyFlows()
	if len(fs) != 1 {
		t.Fatalf("%s's proxy lists %d flows, want 1: %+v", n.name, len(fs), fs)
	}
	return fs[0].BytesUp
}

// TestNATTypeFromSecondPort: with only the relay to ask, a node learns its NAT type from the relay's
// two ports: the same mapping for both behind a port-restricted cone, two mappings behind a symmetric
// NAT, its own address when public.
func TestNATTypeFromSecondPort(t *testing.T) {
	for _, c := range []struct{ profile, want string }{
		{natPortRestricted, "cone"}, {natFullCone, "cone"}, {natSymmetric, "symmetric"}, {"public", "public"},
	} {
		t.Run(c.profile, func(t *testing.T) {
			l := newNATLab(t, c.profile, "", 0)
			a := l.startBehind(t, l.a, "a", "10.144.144.2/24")
			var st control.Status
			netlab.Eventually(t, 10*time.Second, func() bool { st = a.status(); return st.NAT == c.want },
				"behind a %s NAT with only the relay as peer: NAT type %q, want %q", c.profile, a.status().NAT, c.want)
			t.Logf("%s: %s, endpoints %v", c.profile, st.NAT, st.Endpoints)
		})
	}
}
