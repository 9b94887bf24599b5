package e2e

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/netlab"
)

// lanLine builds A - B - C with a LAN host L behind C (C 192.168.50.1/24 on "lan0", L 192.168.50.10/24),
// L without any route back to the mesh. C runs with the given extra flags.
func lanLine(t *testing.T, cExtra ...string) (a, c *weftNode, ha, hc, hl *netlab.Host) {
	l := newLine(t, nil, append([]string{"--subnet", "192.168.50.0/24"}, cExtra...), func(l *line) {
		hl = l.lab.Host("l")
		l.lab.Link(l.hc, "lan0", netip.MustParsePrefix("192.168.50.1/24"), hl, "eth0", netip.MustParsePrefix("192.168.50.10/24"))
	})
	return l.a, l.c, l.ha, l.hc, hl
}

var lanHost = netip.MustParseAddr("192.168.50.10")

// TestSubnetSNAT: A reaches a TCP service on a LAN host behind C (two hops away); with the default SNAT
// the LAN host, which has no route back, sees C's LAN address. Stopping C removes its nftables table and
// turns IP forwarding off again.
func TestSubnetSNAT(t *testing.T) {
	a, c, ha, hc, hl := lanLine(t)
	mustPing(t, ha, lanHost, 15*time.Second)
	r, ok := routeTo(a, "192.168.50.0/24")
	if !ok || r.Hostname != "gamma" || r.Hops != 2 || r.NextHop != ipB.String() {
		t.Errorf("alpha's route to the LAN: %+v (found %v), want gamma via 10.144.144.2, 2 hops", r, ok)
	}
	if got := hc.Run(t, "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(got) != "1" {
		t.Errorf("ip_forward on the exposing node = %q, want 1", got)
	}
	peerAddrServer(t, hl, "tcp", lanHost, 7000)
	got := askPeerAddr(t, ha, "tcp", lanHost, 7000, 40300)
	if !strings.HasPrefix(got, "192.168.50.1:") {
		t.Errorf("LAN service saw %q, want gamma's LAN address 192.168.50.1 (SNAT)", got)
	}
	transferChecked(t, ha, hl, lanHost, 7001, 16<<20)
	if !strings.Contains(hc.Run(t, "nft", "list", "tables"), "weft_weft0") {
		t.Error("no weft_weft0 nftables table on the exposing node")
	}
	c.stop()
	if out := hc.Run(t, "nft", "list", "tables"); strings.Contains(out, "weft_") {
		t.Errorf("nftables table left behind after stop:\n%s", out)
	}
	// The namespace started with forwarding off and weft turned it on: stopping weft turns it off.
	if got := hc.Run(t, "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(got) != "0" {
		t.Errorf("ip_forward on the exposing node after stop = %q, want 0 (weft had turned it on)", got)
	}
}

// TestSubnetNoSNAT: with --subnet-snat=false and a route back on the LAN host, the LAN service sees A's
// virtual IP and port.
func TestSubnetNoSNAT(t *testing.T) {
	_, _, ha, _, hl := lanLine(t, "--subnet-snat=false")
	hl.AddRoute(t, netip.MustParsePrefix("10.144.144.0/24"), netip.MustParseAddr("192.168.50.1"))
	mustPing(t, ha, lanHost, 15*time.Second)
	peerAddrServer(t, hl, "tcp", lanHost, 7000)
	if got := askPeerAddr(t, ha, "tcp", lanHost, 7000, 40301); got != "10.144.144.1:40301" {
		t.Errorf("LAN service saw %q, want alpha's own 10.144.144.1:40301", got)
	}
}

// TestSubnetConflictsAndLoops: two nodes announce the same LAN prefix (both warn; the others route it to
// one of them only), and a node announcing a prefix that covers another node's underlay network is not
// routed there by that node (warning, and the underlay keeps working).
func TestSubnetConflictsAndLoops(t *testing.T) {
	lab := netlab.New(t)
	ha, hb, hc := lab.Host("a"), lab.Host("b"), lab.Host("c")
	_, bOnAB := link(lab, ha, hb, 1)
	_, cOnAC := link(lab, ha, hc, 2)
	a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24", peers: []string{udpPeer(bOnAB), udpPeer(cOnAC)}})
	b := startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24", extra: []string{"--subnet", "192.168.60.0/24"}})
	// gamma also claims 192.168.60.0/24, and 172.16.1.0/24: alpha's own underlay link to beta.
	c := startNode(t, hc, "gamma", nodeOpts{ip: "10.144.144.3/24",
		extra: []string{"--subnet", "192.168.60.0/24", "--subnet", "172.16.1.0/24"}})

	hasWarning := func(n *weftNode, substr string) bool {
		for _, w := range n.status().Warnings {
			if strings.Contains(w, substr) {
				return true
			}
		}
		return false
	}
	for _, n := range []*weftNode{b, c} {
		netlab.Eventually(t, 15*time.Second, func() bool { return hasWarning(n, "192.168.60.0/24") },
			"%s shows no warning about the overlapping subnet: %v", n.name, n.status().Warnings)
	}
	count := 0
	for _, r := range a.routes() {
		if r.Prefix == "192.168.60.0/24" {
			count++
		}
	}
	if count != 1 {
		t.Errorf("alpha has %d routes for the contested 192.168.60.0/24, want exactly 1", count)
	}
	netlab.Eventually(t, 10*time.Second, func() bool { return hasWarning(a, "route 172.16.1.0/24") },
		"alpha does not warn about gamma's 172.16.1.0/24 covering its underlay: %v", a.status().Warnings)
	if out := ha.Run(t, "ip", "route", "show", "172.16.1.0/24"); strings.Contains(out, "weft0") {
		t.Errorf("alpha installed a route that loops its underlay into the tunnel: %s", out)
	}
	// The underlay and the tunnel to beta still work.
	mustPing(t, ha, ipB, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := ha.RunErr(ctx, "ping", "-c", "1", "-W", "1", bOnAB.String()); err != nil {
		t.Errorf("alpha's underlay to beta broke: %v", err)
	}
}
