package e2e

// Attacks by a hostile member: a process in its own namespace that knows the network name and secret,
// joins with a real handshake (e2e/hostile) and then tries to speak for another node. Each test checks
// on the attacked node that the attack failed, and that it would have been visible had it worked.

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/netlab"
	"github.com/weft-vpn/weft/internal/session"
)

// TestForgedAnnouncement: mallory floods beta with announcements for alpha: fake links under its own
// signature, and alpha's real announcement (which beta passed on to it) with a huge sequence number.
// Had beta stored either, alpha's virtual IP would be gone from its routes (the fake one announces
// another address) and alpha could never correct it (its own sequence numbers are lower). Beta drops
// every one, counts them, keeps routing to alpha directly, and the ping goes through.
func TestForgedAnnouncement(t *testing.T) {
	f := newFloodLab(t, floodOpts{})
	hb, hm, a, b, bOnMB := f.hb, f.hm, f.a, f.b, f.bOnMB
	victim := a.status().NodeID
	before := b.status().Drops["announce_forged"]

	const count = 50
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := hm.RunErr(ctx, hostileBin, "-peer", netip.AddrPortFrom(bOnMB, 11010).String(), "-count", fmt.Sprint(count),
		"forge-announce", "-victim", victim)
	if err != nil || strings.TrimSpace(out) != fmt.Sprintf("sent %d", count) {
		t.Fatalf("hostile member: %v: %q, want \"sent %d\"", err, out, count)
	}
	// The tool has sent everything; give beta a moment to act on it, then look at what a user sees.
	time.Sleep(500 * time.Millisecond)
	r, ok := routeTo(b, "10.144.144.1/32")
	if !ok || r.NodeID != victim || r.NextHop != "10.144.144.1" {
		t.Fatalf("beta's route to alpha after the attack: %+v (found %v), want node %s directly", r, ok, victim)
	}
	if p, ok := b.peer(a.ip); !ok || !p.Direct || p.NodeID != victim {
		t.Fatalf("beta's peer alpha after the attack: %+v (found %v), want direct, node %s", p, ok, victim)
	}
	if _, ok := routeTo(b, "10.144.144.99/32"); ok {
		t.Fatal("beta installed the forged announcement's address 10.144.144.99")
	}
	mustPing(t, hb, a.ip, 3*time.Second)
	var got uint64
	waitFor(t, 3*time.Second, func() bool {
		got = b.status().Drops["announce_forged"] - before
		return got >= count
	}, func() string {
		return fmt.Sprintf("beta counted %d forged announcements, want %d; drops %v; peers %+v", got, count, b.status().Drops, b.peers())
	})

	if warned := b.proc.Log(); !strings.Contains(warned, "dropped a forged announcement") {
		t.Error("beta did not log the forged announcement")
	}
}

// TestAcceptSubnets: a member announces the cloud metadata address, a public network and a private LAN.
// With the default --accept-subnets only the private LAN reaches alpha's kernel, and alpha warns about
// the other two, naming them and their node; with `all` plus the exact metadata /32, alpha takes both.
func TestAcceptSubnets(t *testing.T) {
	for _, c := range []struct {
		name    string
		extra   []string
		install map[string]bool
	}{
		{"default", nil, map[string]bool{"192.168.77.0/24": true, "169.254.169.254": false, "198.51.100.0/24": false}},
		{"all and exact", []string{"--accept-subnets", "all", "--accept-subnets", "169.254.169.254/32"},
			map[string]bool{"192.168.77.0/24": true, "169.254.169.254": true, "198.51.100.0/24": true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ha, hb := pair(t)
			b := startNode(t, hb, "mallory", nodeOpts{ip: "10.144.144.2/24", extra: []string{"--subnet-snat=false",
				"--subnet", "169.254.169.254/32", "--subnet", "198.51.100.0/24", "--subnet", "192.168.77.0/24"}})
			a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24", peers: []string{"udp://192.0.2.2:11010"}, extra: c.extra})
			a.waitPeer(b.ip, 10*time.Second)
			var routes string
			waitFor(t, 5*time.Second, func() bool {
				if _, ok := routeTo(a, "192.168.77.0/24"); !ok {
					return false
				}
				routes = ha.Run(t, "ip", "route", "show", "dev", "weft0")
				return strings.Contains(routes, "192.168.77.0/24")
			}, func() string { return "alpha did not install mallory's LAN 192.168.77.0/24:\n" + routes })
			for prefix, want := range c.install {
				if got := strings.Contains(routes, prefix); got != want {
					t.Errorf("alpha's kernel routes via weft0 (want %s installed: %v):\n%s", prefix, want, routes)
				}
				warned := false
				for _, w := range a.status().Warnings {
					warned = warned || (strings.Contains(w, prefix) && strings.Contains(w, "outside --accept-subnets") &&
						strings.Contains(w, "mallory"))
				}
				if warned == want {
					t.Errorf("alpha's warning about %s: present %v, want %v (warnings %q)", prefix, warned, !want, a.status().Warnings)
				}
			}
		})
	}
}

// TestVirtualIPFirstClaim: mallory announces beta's virtual IP under a node ID lower than beta's (the
// old rule, lowest node ID wins, would have handed it the address). Alpha keeps the address with beta,
// which claimed it first, and warns; once beta is gone alpha gives the address to nobody, since beta's
// claim is held (state dir) rather than passed to whoever announces it next.
func TestVirtualIPFirstClaim(t *testing.T) {
	lab := netlab.New(t)
	ha, hb, hm := lab.Host("a"), lab.Host("b"), lab.Host("m")
	_, bOnAB := link(lab, ha, hb, 1)
	_, mOnAM := link(lab, ha, hm, 2)
	a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24", peers: []string{udpPeer(bOnAB), udpPeer(mOnAM)}})
	b := startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24"})
	a.waitPeer(b.ip, 10*time.Second)
	beta := b.status().NodeID
	var key string
	for {
		id, err := session.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		if id.NodeID().String() < beta {
			key = hex.EncodeToString(id.Private[:])
			break
		}
	}
	m := startNode(t, hm, "mallory", nodeOpts{ip: "10.144.144.2/24", key: key})
	if mallory := m.status().NodeID; mallory >= beta {
		t.Fatalf("mallory's node ID %s is not below beta's %s", mallory, beta)
	}
	var warns []string
	waitFor(t, 10*time.Second, func() bool {
		warns = a.status().Warnings
		return slices.ContainsFunc(warns, func(w string) bool {
			return strings.Contains(w, "duplicate virtual IP 10.144.144.2") && strings.Contains(w, "claimed the address first")
		})
	}, func() string { return fmt.Sprintf("alpha does not warn about the duplicate: %q", warns) })
	if r, ok := routeTo(a, "10.144.144.2/32"); !ok || r.NodeID != beta {
		t.Fatalf("alpha routes 10.144.144.2 to %+v (found %v), want beta %s (the first claimant)", r, ok, beta)
	}
	mustPing(t, ha, b.ip, 3*time.Second)

	b.stop()
	waitFor(t, 15*time.Second, func() bool {
		warns = a.status().Warnings
		return slices.ContainsFunc(warns, func(w string) bool { return strings.Contains(w, "is held by node "+beta) })
	}, func() string { return fmt.Sprintf("alpha does not say beta's claim is held: %q", warns) })
	if r, ok := routeTo(a, "10.144.144.2/32"); ok {
		t.Fatalf("with beta gone alpha routes 10.144.144.2 to %+v; want no route (beta's claim is held)", r)
	}
}

// TestSpoofedSourceRefused: mallory, a member on its own host, adds alpha's virtual IP to its loopback
// and sends UDP and opens TCP (plain and over the KCP proxy) to a service on beta from that address.
// Its weft refuses to carry them (drop reason src_not_owned) and beta's firewall counter for alpha's
// address never moves, while alpha's own packets reach beta.
func TestSpoofedSourceRefused(t *testing.T) {
	for _, mode := range []string{"plain", "kcp"} {
		t.Run(mode, func(t *testing.T) {
			lab := netlab.New(t)
			ha, hb, hm := lab.Host("a"), lab.Host("b"), lab.Host("m")
			_, bOnAB := link(lab, ha, hb, 1)
			_, bOnMB := link(lab, hm, hb, 2)
			var extra []string
			if mode == "kcp" {
				extra = []string{"--tcp-proxy", "kcp"}
			}
			b := startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24", extra: extra})
			a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24", peers: []string{udpPeer(bOnAB)}, extra: extra})
			m := startNode(t, hm, "mallory", nodeOpts{ip: "10.144.144.3/24", peers: []string{udpPeer(bOnMB)}, extra: extra})
			b.waitPeer(a.ip, 10*time.Second)
			b.waitPeer(m.ip, 10*time.Second)
			// Beta counts what arrives from alpha's address on its TUN, as a firewall would see it.
			counter := inputCounters(t, hb, "spooftest", map[string][]string{
				"alpha": {"iifname", "weft0", "ip", "saddr", "10.144.144.1"},
			})
			counted := func() int { return counter("alpha") }
			startProbe(t, hb, "echo-server", "10.144.144.2:7810")
			hm.Run(t, "ip", "addr", "add", "10.144.144.1/32", "dev", "lo")
			before := m.status().Drops["src_not_owned"]
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for i := 0; i < 5; i++ {
				hm.RunErr(ctx, "sh", "-c", "echo spoof | nc -u -w 1 -s 10.144.144.1 10.144.144.2 7811")
			}
			out, _ := hm.RunErr(ctx, "nc", "-z", "-w", "2", "-s", "10.144.144.1", "10.144.144.2", "7810")
			if got := counted(); got != 0 {
				t.Fatalf("beta saw %d packets from alpha's address that mallory sent (nc: %q)", got, out)
			}
			if d := m.status().Drops["src_not_owned"] - before; d < 6 {
				t.Errorf("mallory counted %d src_not_owned drops, want at least 6 (5 UDP, 1+ SYN)", d)
			}
			// The real owner's traffic passes.
			ha.RunErr(ctx, "sh", "-c", "echo real | nc -u -w 1 10.144.144.2 7811")
			if got := counted(); got == 0 {
				t.Fatal("alpha's own packet did not reach beta")
			}
			if mode == "kcp" { // and alpha's own TCP flow goes through the proxy
				opened := a.status().Proxy.FlowsOpened
				runProbe(t, ha, 30*time.Second, "flood", "10.144.144.2:7810", "1", "4096")
				if a.status().Proxy.FlowsOpened == opened {
					t.Error("alpha's TCP flow to beta did not go through the KCP proxy")
				}
			}
		})
	}
}

// TestRogueRelay: alpha and gamma have no session of their own; the only path between them is a rogue
// relay (e2e/hostile relay, a member with the secret) that announces itself as both nodes' neighbour and
// relays their traffic. It alters every 50th sealed message from alpha to gamma exactly where an IP
// packet's source address sits (were it not authenticated, gamma would read 10.144.144.9 instead of
// alpha's address) and injects UDP datagrams with alpha's source over its own session with gamma. A
// 64 MiB transfer from alpha to gamma through it arrives intact; gamma drops every altered message
// (e2e_decrypt, one per alteration) and every injected one (src_not_sender); gamma's firewall never
// sees the rewritten source or an injected datagram.
func TestRogueRelay(t *testing.T) {
	lab := netlab.New(t)
	ha, hr, hc := lab.Host("a"), lab.Host("r"), lab.Host("c")
	aOnAR, _ := link(lab, ha, hr, 1)
	_, cOnRC := link(lab, hr, hc, 2)
	a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24"})
	c := startNode(t, hc, "gamma", nodeOpts{ip: "10.144.144.3/24"})

	// Gamma's firewall counts what its TUN delivers: the rewritten source, and the injected datagrams.
	counter := inputCounters(t, hc, "roguetest", map[string][]string{
		"rewritten": {"iifname", "weft0", "ip", "saddr", "10.144.144.9"},
		"injected":  {"iifname", "weft0", "udp", "dport", "7811"},
	})
	startProbe(t, hc, "serial-server", "10.144.144.3:7820")

	const injectCount = 50
	rogue := hr.Start(t, hostileBin, "-peer", netip.AddrPortFrom(aOnAR, 11010).String(), "-ipv4", "10.144.144.66/24",
		"-count", strconv.Itoa(injectCount), "relay", "-to", netip.AddrPortFrom(cOnRC, 11010).String(),
		"-tamper-every", "50", "-rewrite-src", "10.144.144.1,10.144.144.9",
		"-inject-src", "10.144.144.1", "-inject-to", "10.144.144.3:7811")
	rogue.WaitLog(t, "relaying", 15*time.Second)
	waitFor(t, 10*time.Second, func() bool {
		r, ok := routeTo(a, "10.144.144.3/32")
		return ok && r.NextHop == "10.144.144.66"
	}, func() string {
		return fmt.Sprintf("alpha has no route to gamma through the rogue relay: %+v", a.routes())
	})
	mustPing(t, ha, c.ip, 10*time.Second)
	waitFor(t, 10*time.Second, func() bool {
		r, ok := routeTo(c, "10.144.144.1/32")
		return ok && r.NextHop == "10.144.144.66"
	}, func() string {
		return fmt.Sprintf("gamma has no route to alpha through the rogue relay: %+v", c.routes())
	})
	before := c.status().Drops
	// Gamma knows alpha's address now: the injected datagrams claim a source another node owns.
	if err := rogue.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	rogue.WaitLog(t, fmt.Sprintf("injected %d", injectCount), 10*time.Second)

	out := runProbe(t, ha, 120*time.Second, "upload", "10.144.144.3:7820", "1", strconv.Itoa(64<<20), "90")
	if !strings.HasPrefix(out, "ok 1 flows") {
		t.Fatalf("64 MiB from alpha to gamma through the rogue relay: %s", out)
	}
	if err := rogue.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := rogue.Wait(5 * time.Second); code != 0 || err != nil {
		t.Fatalf("rogue relay exited %d, %v: %s", code, err, rogue.Log())
	}
	var forwarded, tampered, injected int
	if _, err := fmt.Sscanf(lastLines(rogue.Log(), 1), "forwarded %d tampered %d injected %d", &forwarded, &tampered, &injected); err != nil {
		t.Fatalf("rogue relay's report: %v: %q", err, rogue.Log())
	}
	t.Logf("rogue relay: forwarded %d, altered %d, injected %d", forwarded, tampered, injected)
	// 64 MiB is 48,000 full-size packets: the transfer did go through the relay, and met alterations.
	if forwarded < 40000 || tampered < 500 || injected != injectCount {
		t.Fatalf("rogue relay forwarded %d, altered %d, injected %d: want >= 40000, >= 500, %d", forwarded, tampered, injected, injectCount)
	}
	var drops map[string]uint64
	waitFor(t, 2*time.Second, func() bool {
		drops = c.status().Drops
		return int(drops["e2e_decrypt"]-before["e2e_decrypt"]) == tampered
	}, func() string {
		return fmt.Sprintf("gamma dropped %d altered messages (e2e_decrypt), the relay altered %d; drops %v",
			drops["e2e_decrypt"]-before["e2e_decrypt"], tampered, drops)
	})
	if d := drops["src_not_sender"] - before["src_not_sender"]; d != injectCount {
		t.Errorf("gamma counted %d src_not_sender drops, want %d (the injected datagrams)", d, injectCount)
	}
	if n := counter("rewritten"); n != 0 {
		t.Errorf("gamma's firewall saw %d packets from the rewritten source 10.144.144.9", n)
	}
	if n := counter("injected"); n != 0 {
		t.Errorf("gamma's firewall saw %d injected datagrams", n)
	}
}

// TestUnderlaySpoofDropped: a host on beta's underlay network (no weft, no secret) sends UDP to beta's
// virtual IP with alpha's virtual IP as source, routed to beta's underlay address. Beta's guard table
// drops it before it reaches any socket (a service there would otherwise take it for alpha); alpha's own
// datagram, through the tunnel, arrives. On exit the guard table is gone.
func TestUnderlaySpoofDropped(t *testing.T) {
	f := newFloodLab(t, floodOpts{})
	ha, hb, hm, b, bOnMB := f.ha, f.hb, f.hm, f.b, f.bOnMB
	guard := hb.Run(t, "nft", "list", "table", "inet", "weft_weft0_guard")
	if !strings.Contains(guard, "10.144.144.0/24") || !strings.Contains(guard, "drop") {
		t.Fatalf("beta's guard table does not drop mesh sources from other interfaces:\n%s", guard)
	}
	// Beta counts, at its input hook (after the guard), what arrives with alpha's source.
	counter := inputCounters(t, hb, "guardtest", map[string][]string{
		"forged": {"iifname", "!=", "weft0", "ip", "saddr", "10.144.144.1"},
		"real":   {"iifname", "weft0", "ip", "saddr", "10.144.144.1"},
	})
	hm.Run(t, "ip", "addr", "add", "10.144.144.1/32", "dev", "lo")
	hm.Run(t, "ip", "route", "add", "10.144.144.2/32", "via", bOnMB.String())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		hm.RunErr(ctx, "sh", "-c", "echo forged | nc -u -w 1 -s 10.144.144.1 10.144.144.2 7841")
	}
	ha.RunErr(ctx, "sh", "-c", "echo real | nc -u -w 1 10.144.144.2 7841")
	if n := counter("forged"); n != 0 {
		t.Errorf("beta's input saw %d packets from alpha's address off the underlay", n)
	}
	if n := counter("real"); n == 0 {
		t.Error("alpha's own datagram did not arrive through the tunnel")
	}
	b.stop()
	if out, err := hb.RunErr(context.Background(), "nft", "list", "table", "inet", "weft_weft0_guard"); err == nil {
		t.Errorf("the guard table outlived beta:\n%s", out)
	}
}

// inputCounters makes an nftables table on h with an input-hook chain and one named counter per rule:
// rules maps a counter name to the match it counts (nft rule syntax, split in words). It returns a
// function reading a counter's packets. The table is deleted when the test ends.
func inputCounters(t *testing.T, h *netlab.Host, table string, rules map[string][]string) func(name string) int {
	t.Helper()
	h.Run(t, "nft", "add", "table", "inet", table)
	t.Cleanup(func() { h.RunErr(context.Background(), "nft", "delete", "table", "inet", table) })
	h.Run(t, "nft", "add", "chain", "inet", table, "in", "{ type filter hook input priority 0; }")
	for name, match := range rules {
		h.Run(t, "nft", "add", "counter", "inet", table, name)
		h.Run(t, "nft", append(append([]string{"add", "rule", "inet", table, "in"}, match...), "counter", "name", name)...)
	}
	return func(name string) int {
		out := h.Run(t, "nft", "list", "counter", "inet", table, name)
		i := strings.Index(out, "packets ")
		if i < 0 {
			t.Fatalf("no counter in %q", out)
		}
		n, _ := strconv.Atoi(strings.Fields(out[i+len("packets "):])[0])
		return n
	}
}
