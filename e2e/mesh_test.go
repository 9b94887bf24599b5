package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/control"
	"github.com/weft-vpn/weft/internal/netlab"
)

// link joins two hosts on their own /24 (172.16.<n>.0/24, .1 on a, .2 on b) and returns the two addresses.
func link(lab *netlab.Lab, a, b *netlab.Host, n int) (netip.Addr, netip.Addr) {
	pa := netip.MustParsePrefix(fmt.Sprintf("172.16.%d.1/24", n))
	pb := netip.MustParsePrefix(fmt.Sprintf("172.16.%d.2/24", n))
	lab.Link(a, fmt.Sprintf("to-%s", b.Name()), pa, b, fmt.Sprintf("to-%s", a.Name()), pb)
	return pa.Addr(), pb.Addr()
}

func udpPeer(a netip.Addr) string { return "udp://" + a.String() + ":11010" }

// routeTo returns node n's route for prefix, if it has one.
func routeTo(n *weftNode, prefix string) (control.Route, bool) {
	for _, r := range n.routes() {
		if r.Prefix == prefix {
			return r, true
		}
	}
	return control.Route{}, false
}

// line is the three-node line A - B - C (A and C peer only with B); lab, hosts and nodes.
type line struct {
	lab        *netlab.Lab
	ha, hb, hc *netlab.Host
	a, b, c    *weftNode
}

// newLine builds A - B - C; aExtra and cExtra are extra flags of A and C. setup, if not nil, runs after
// the hosts exist and before the nodes start (to add links).
func newLine(t *testing.T, aExtra, cExtra []string, setup func(l *line)) *line {
	l := &line{lab: netlab.New(t)}
	l.ha, l.hb, l.hc = l.lab.Host("a"), l.lab.Host("b"), l.lab.Host("c")
	_, bOnAB := link(l.lab, l.ha, l.hb, 1)
	bOnBC, _ := link(l.lab, l.hb, l.hc, 2)
	if setup != nil {
		setup(l)
	}
	l.a = startNode(t, l.ha, "alpha", nodeOpts{ip: "10.144.144.1/24", peers: []string{udpPeer(bOnAB)}, extra: aExtra})
	l.b = startNode(t, l.hb, "beta", nodeOpts{ip: "10.144.144.2/24"})
	l.c = startNode(t, l.hc, "gamma", nodeOpts{ip: "10.144.144.3/24", peers: []string{udpPeer(bOnBC)}, extra: cExtra})
	return l
}

// TestRelayLine: A - B - C, A and C peer only with B. A reaches C through B: ping, a TCP service on C
// sees A's virtual IP and port, 64 MiB intact, and A's routes and peers say "via B, 2 hops".
func TestRelayLine(t *testing.T) {
	l := newLine(t, nil, nil, nil)
	a, c, ha, hc := l.a, l.c, l.ha, l.hc

	mustPing(t, ha, ipC, 15*time.Second)
	mustPing(t, hc, ipA, 5*time.Second)

	r, ok := routeTo(a, "10.144.144.3/32")
	if !ok || r.NextHop != ipB.String() || r.Hops != 2 || r.Hostname != "gamma" {
		t.Errorf("alpha's route to gamma: %+v (found %v), want next hop 10.144.144.2, 2 hops", r, ok)
	}
	pc := a.waitPeer(ipC, 5*time.Second)
	if pc.Direct || pc.Tunnel != "relay" || pc.NextHop != ipB.String() || pc.Endpoint != "" || pc.LastHandshake != nil {
		t.Errorf("alpha's view of gamma: %+v, want relayed via 10.144.144.2", pc)
	}
	if _, ok := c.peer(ipA); !ok {
		t.Error("gamma does not list alpha")
	}

	peerAddrServer(t, hc, "tcp", ipC, 7000)
	if got := askPeerAddr(t, ha, "tcp", ipC, 7000, 40200); got != "10.144.144.1:40200" {
		t.Errorf("TCP service on gamma saw %q, want 10.144.144.1:40200", got)
	}
	// Relayed packets carry a 42-byte end-to-end envelope: alpha's kernel has a route to gamma with
	// the TUN MTU minus 42, so full-size packets are not fragmented on the 1500-byte underlay.
	if out := ha.Run(t, "ip", "route", "get", ipC.String()); !strings.Contains(out, "mtu 1358") {
		t.Errorf("alpha's kernel route to gamma: %q, want mtu 1358 (1400 - 42)", out)
	}
	nstat := func(h *netlab.Host) int {
		out := h.Run(t, "cat", "/proc/net/snmp")
		lines := strings.Split(out, "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			if strings.HasPrefix(lines[i], "Ip: ") {
				names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
				for j, n := range names {
					if n == "FragCreates" {
						v, _ := strconv.Atoi(vals[j])
						return v
					}
				}
			}
		}
		t.Fatal("no Ip FragCreates in /proc/net/snmp")
		return 0
	}
	frags := nstat(ha)
	transferChecked(t, ha, hc, ipC, 7001, 64<<20)
	if d := nstat(ha) - frags; d > 100 {
		t.Errorf("alpha's kernel fragmented %d packets during 64 MiB to gamma through beta", d)
	}
}

// TestFailover: two relays between A and C. Killing the relay in use moves traffic to the other one
// within DeadPeerTimeout + 2 s (asserted with a 3x margin); bringing it back settles without flapping.
func TestFailover(t *testing.T) {
	lab := netlab.New(t)
	ha, hb, hc, hd := lab.Host("a"), lab.Host("b"), lab.Host("c"), lab.Host("d")
	_, bOnAB := link(lab, ha, hb, 1)
	bOnBC, _ := link(lab, hb, hc, 2)
	_, dOnAD := link(lab, ha, hd, 3)
	dOnDC, _ := link(lab, hd, hc, 4)
	a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24", peers: []string{udpPeer(bOnAB), udpPeer(dOnAD)}})
	b := startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24"})
	startNode(t, hc, "gamma", nodeOpts{ip: "10.144.144.3/24", peers: []string{udpPeer(bOnBC), udpPeer(dOnDC)}})
	d := startNode(t, hd, "delta", nodeOpts{ip: "10.144.144.4/24"})
	relays := map[string]*weftNode{ipB.String(): b, "10.144.144.4": d}

	mustPing(t, ha, ipC, 15*time.Second)
	// Wait until both relays are known, so the survivor's path is already in the database.
	netlab.Eventually(t, 10*time.Second, func() bool {
		_, okB := a.peer(ipB)
		_, okD := a.peer(netip.MustParseAddr("10.144.144.4"))
		return okB && okD
	}, "alpha does not see both relays")
	r, _ := routeTo(a, "10.144.144.3/32")
	inUse, ok := relays[r.NextHop]
	if !ok {
		t.Fatalf("alpha's route to gamma goes via %q, not a relay", r.NextHop)
	}
	t.Logf("path in use: via %s", inUse.name)

	inUse.proc.Kill()
	killed := time.Now()
	const bound = 5*time.Second + 2*time.Second // DeadPeerTimeout + 2 s, as the README states
	mustPing(t, ha, ipC, 3*bound)
	t.Logf("traffic resumed %v after the relay was killed (bound %v)", time.Since(killed).Round(time.Millisecond), bound)
	if r2, _ := routeTo(a, "10.144.144.3/32"); r2.NextHop == r.NextHop {
		t.Errorf("route still points at the dead relay: %+v", r2)
	}

	inUse.restart()
	netlab.Eventually(t, 15*time.Second, func() bool {
		p, ok := a.peer(inUse.ip)
		return ok && p.Direct
	}, "restarted relay never came back")
	// Let routes settle, then watch them: the next hop may change at most once (to the better path).
	time.Sleep(3 * time.Second)
	var hops []string
	for i := 0; i < 20; i++ {
		r, ok := routeTo(a, "10.144.144.3/32")
		if !ok {
			t.Fatal("route to gamma vanished")
		}
		if len(hops) == 0 || hops[len(hops)-1] != r.NextHop {
			hops = append(hops, r.NextHop)
		}
		if !canPing(ha, ipC) {
			t.Errorf("ping lost while routes settle (sample %d)", i)
		}
		time.Sleep(400 * time.Millisecond)
	}
	if len(hops) > 2 {
		t.Errorf("route to gamma flapped between next hops: %v", hops)
	}
}

// TestFiveNodes: a partial mesh (a ring a-b-c-d-e-a with one chord b-d); every node reaches every other.
func TestFiveNodes(t *testing.T) {
	lab := netlab.New(t)
	names := []string{"a", "b", "c", "d", "e"}
	hosts := map[string]*netlab.Host{}
	for _, n := range names {
		hosts[n] = lab.Host(n)
	}
	peers := map[string][]string{}
	for i, e := range [][2]string{{"a", "b"}, {"b", "c"}, {"c", "d"}, {"d", "e"}, {"e", "a"}, {"b", "d"}} {
		_, second := link(lab, hosts[e[0]], hosts[e[1]], i+1)
		peers[e[0]] = append(peers[e[0]], udpPeer(second))
	}
	var nodes []*weftNode
	for i, n := range names {
		nodes = append(nodes, startNode(t, hosts[n], "node-"+n, nodeOpts{ip: fmt.Sprintf("10.144.144.%d/24", i+1), peers: peers[n]}))
	}
	for i, from := range nodes {
		netlab.Eventually(t, 20*time.Second, func() bool { return len(from.peers()) == len(nodes)-1 },
			"%s does not list all %d other nodes", from.name, len(nodes)-1)
		for j, to := range nodes {
			if i != j {
				mustPing(t, hosts[names[i]], to.ip, 10*time.Second)
			}
		}
	}
}

// TestDuplicateVirtualIP: two nodes claim 10.144.144.2. A node refuses a direct session with a node
// that has its own address; elsewhere every node sends that address to one owner only (the lowest
// node_id), so traffic is not split, and `weft status` warns.
func TestDuplicateVirtualIP(t *testing.T) {
	lab := netlab.New(t)
	ha, hb, hc := lab.Host("a"), lab.Host("b"), lab.Host("c")
	_, bOnAB := link(lab, ha, hb, 1)
	_, cOnAC := link(lab, ha, hc, 2)
	a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24", peers: []string{udpPeer(bOnAB), udpPeer(cOnAC)}})
	b := startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24"})
	c := startNode(t, hc, "gamma", nodeOpts{ip: "10.144.144.2/24"})
	for _, n := range []*weftNode{b, c} {
		h := n.host
		// Each claimant answers with its own name.
		h.Start(t, "socat", "TCP-LISTEN:7000,bind=10.144.144.2,reuseaddr,fork", "SYSTEM:echo "+n.name)
	}
	netlab.Eventually(t, 15*time.Second, func() bool {
		for _, w := range a.status().Warnings {
			if strings.Contains(w, "duplicate virtual IP 10.144.144.2") {
				return true
			}
		}
		return false
	}, "alpha shows no duplicate-IP warning: %v", a.status().Warnings)
	answers := map[string]int{}
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := ha.RunErr(ctx, "socat", "-T2", "-", "TCP:10.144.144.2:7000")
		cancel()
		if err == nil {
			answers[strings.TrimSpace(out)]++
		}
	}
	if len(answers) != 1 {
		t.Fatalf("connections to the duplicate IP went to %v; want every one to the same node", answers)
	}
	for _, n := range []*weftNode{b, c} {
		found := false
		for _, w := range n.status().Warnings {
			found = found || strings.Contains(w, "10.144.144.2")
		}
		if !found {
			t.Errorf("%s shows no warning about the duplicate address: %v", n.name, n.status().Warnings)
		}
	}
}
