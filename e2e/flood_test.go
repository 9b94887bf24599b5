package e2e

// Floods (issue 10): an outsider or a member tries to starve a node with unauthenticated input. Each
// test runs the flood from its own namespace with e2e/hostile and checks, on the attacked node, that
// the stated bounds hold (replies sent, memory, CPU) and that honest nodes still get in.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/netlab"
)

// procRSS returns a process's resident memory in KiB.
func procRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// procCPU returns a process's CPU time (user + system).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // after "pid (comm) "
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// floodLab is beta under attack from host m, with alpha holding a session to it; gamma's host c is
// ready for a fresh node.
type floodLab struct {
	lab            *netlab.Lab
	ha, hb, hm, hc *netlab.Host
	a, b           *weftNode
	bOnMB          netip.Addr // beta's address as the attacker reaches it
	bOnCB          netip.Addr
}

// floodOpts are the flags of alpha and beta beyond the usual (beta's listeners; extra flags of both).
type floodOpts struct {
	bListen []string
	extra   []string
}

func newFloodLab(t *testing.T, o floodOpts) *floodLab {
	lab := netlab.New(t)
	ha, hb, hm, hc := lab.Host("a"), lab.Host("b"), lab.Host("m"), lab.Host("c")
	_, bOnAB := link(lab, ha, hb, 1)
	_, bOnMB := link(lab, hm, hb, 2)
	_, bOnCB := link(lab, hc, hb, 3)
	b := startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24", listen: o.bListen, extra: o.extra})
	a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24", peers: []string{udpPeer(bOnAB)}, extra: o.extra})
	b.waitPeer(a.ip, 10*time.Second)
	return &floodLab{lab: lab, ha: ha, hb: hb, hm: hm, hc: hc, a: a, b: b, bOnMB: bOnMB, bOnCB: bOnCB}
}

// proxiedFlowsWork checks that alpha's TCP flows to beta go through the KCP proxy and arrive intact
// (an echo server on beta's port, 4 flows of 64 KiB).
func (f *floodLab) proxiedFlowsWork(t *testing.T, port int) {
	t.Helper()
	addr := fmt.Sprintf("10.144.144.2:%d", port)
	startProbe(t, f.hb, "echo-server", addr)
	opened := f.a.status().Proxy.FlowsOpened
	if out := runProbe(t, f.ha, 30*time.Second, "flood", addr, "4", "65536"); !strings.HasPrefix(out, "ok") {
		t.Fatalf("alpha's proxied flows to beta: %s", out)
	}
	if f.a.status().Proxy.FlowsOpened < opened+4 {
		t.Error("alpha's TCP flows to beta did not go through the KCP proxy")
	}
}

// runHostile runs the hostile tool on host h to completion and returns its last line's fields.
func runHostile(t *testing.T, p *netlab.Proc) []string {
	t.Helper()
	if code, err := p.Wait(60 * time.Second); code != 0 || err != nil {
		t.Fatalf("hostile exited %d, %v: %s", code, err, p.Log())
	}
	return strings.Fields(lastLines(p.Log(), 1))
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

// TestUnknownIndexFlood: 3,000 data packets a second for unknown sessions, from 1,000 source ports,
// for 10 s. Beta starts at most one handshake back per source address per second (all ports share one
// address here), a fresh node gamma forms its session with beta within 2 s in the middle of it, alpha's
// session survives, and beta's memory grows by less than 10 MiB.
func TestUnknownIndexFlood(t *testing.T) {
	f := newFloodLab(t, floodOpts{})
	rss0 := procRSS(t, f.b.proc.Pid())
	flood := f.hm.Start(t, hostileBin, "flood-unknown", "-to", netip.AddrPortFrom(f.bOnMB, 11010).String(),
		"-rate", "3000", "-ports", "1000", "-seconds", "10")
	time.Sleep(3 * time.Second)
	c := startNode(t, f.hc, "gamma", nodeOpts{ip: "10.144.144.3/24", peers: []string{udpPeer(f.bOnCB)}})
	took := waitFor(t, 2*time.Second, func() bool { _, ok := c.peer(f.b.ip); return ok }, func() string {
		return fmt.Sprintf("gamma formed no session with beta during the flood; beta's drops %v", f.b.status().Drops)
	})
	t.Logf("gamma's session with beta came up %v after its start, during the flood", took.Round(time.Millisecond))
	mustPing(t, f.hb, f.a.ip, 3*time.Second)
	out := runHostile(t, flood) // sent N replies M
	sent, replies := atoi(t, out[1]), atoi(t, out[3])
	rss1 := procRSS(t, f.b.proc.Pid())
	t.Logf("flood: %d packets, %d handshakes back; beta's RSS %d -> %d KiB", sent, replies, rss0, rss1)
	if sent < 25000 {
		t.Fatalf("the flood sent only %d packets", sent)
	}
	if replies > 12 { // one per second from one source address, over about 10.5 s
		t.Errorf("beta started %d handshakes towards the flooding address in 10 s, want at most 12", replies)
	}
	if grow := rss1 - rss0; grow > 10<<10 {
		t.Errorf("beta's RSS grew by %d KiB during the flood, want < 10 MiB", grow)
	}
	if _, ok := f.b.peer(f.a.ip); !ok {
		t.Error("beta lost its session with alpha during the flood")
	}
	if d := f.b.status().Drops["unknown_session"]; d < uint64(sent)*9/10 {
		t.Errorf("beta counted %d unknown_session drops for %d packets", d, sent)
	}
}

// TestReplayedHandshakeInit: a member's valid first handshake message, answered once, then replayed
// 5,000 times a second for 10 s. Beta answers none of the replays, does no Diffie-Hellman work for
// them (CPU below half a core), and its sessions stay as they were.
func TestReplayedHandshakeInit(t *testing.T) {
	f := newFloodLab(t, floodOpts{})
	pid := f.b.proc.Pid()
	before, peersBefore := f.b.status(), f.b.peers()
	cpu0 := procCPU(t, pid)
	start := time.Now()
	p := f.hm.Start(t, hostileBin, "replay-init", "-to", netip.AddrPortFrom(f.bOnMB, 11010).String(),
		"-rate", "5000", "-seconds", "10")
	out := runHostile(t, p) // sent N answered M
	cpu, wall := procCPU(t, pid)-cpu0, time.Since(start)
	sent, answered := atoi(t, out[1]), atoi(t, out[3])
	after := f.b.status()
	t.Logf("replays: %d sent, %d answered; beta used %v CPU in %v; drops %v", sent, answered,
		cpu, wall.Round(time.Millisecond), after.Drops)
	if sent < 40000 {
		t.Fatalf("only %d replays sent", sent)
	}
	if answered != 1 {
		t.Errorf("beta answered %d handshake messages, want 1 (the genuine one, none of its replays)", answered)
	}
	if cpu > wall/2 {
		t.Errorf("beta used %v CPU over %v of replays, want less than half a core", cpu, wall.Round(time.Millisecond))
	}
	refused := (after.Drops["handshake_rate"] - before.Drops["handshake_rate"]) + (after.Drops["handshake_replay"] - before.Drops["handshake_replay"])
	if refused < uint64(sent)*9/10 {
		t.Errorf("beta counted %d refused handshakes (handshake_rate + handshake_replay) for %d replays", refused, sent)
	}
	if !strings.Contains(f.b.proc.Log(), "limits on outside input reached") || !strings.Contains(f.b.proc.Log(), "handshake_rate +") {
		t.Error("beta did not log the limits the replays reached")
	}
	if peersAfter := f.b.peers(); len(peersAfter) != len(peersBefore) {
		t.Errorf("beta's peers changed during the replays: %+v before, %+v after", peersBefore, peersAfter)
	}
	mustPing(t, f.hb, f.a.ip, 3*time.Second)
}

// TestIdleTCPConnections: 500 TCP connections to beta's TCP listener that never send a byte. Beta keeps
// at most 8 of them from one address and closes those after the 5 s handshake deadline (the rest at
// once), its memory grows by less than 20 MiB, and a real node joins over TCP meanwhile.
func TestIdleTCPConnections(t *testing.T) {
	f := newFloodLab(t, floodOpts{bListen: []string{"udp://0.0.0.0:11010", "tcp://0.0.0.0:11011"}})
	rss0 := procRSS(t, f.b.proc.Pid())
	p := f.hm.Start(t, hostileBin, "tcp-idle", "-to", netip.AddrPortFrom(f.bOnMB, 11011).String(), "-conns", "500", "-seconds", "15")
	time.Sleep(time.Second)
	c := startNode(t, f.hc, "gamma", nodeOpts{ip: "10.144.144.3/24", peers: []string{"tcp://" + f.bOnCB.String() + ":11011"}})
	waitFor(t, 5*time.Second, func() bool { _, ok := c.peer(f.b.ip); return ok }, func() string {
		return fmt.Sprintf("gamma did not join beta over TCP during the idle connections; beta's drops %v", f.b.status().Drops)
	})
	rssMid := procRSS(t, f.b.proc.Pid())
	out := runHostile(t, p) // opened N closed M longest-ms L
	opened, closed, longest := atoi(t, out[1]), atoi(t, out[3]), atoi(t, out[5])
	drops := f.b.status().Drops
	t.Logf("idle TCP: %d opened, %d closed by beta, the longest after %d ms; beta's RSS %d -> %d KiB; drops %v",
		opened, closed, longest, rss0, rssMid, drops)
	if opened < 490 || closed != opened {
		t.Fatalf("beta closed %d of %d idle connections within 15 s", closed, opened)
	}
	if longest < 4500 || longest > 7500 {
		t.Errorf("the longest idle connection lived %d ms, want about the 5 s handshake deadline", longest)
	}
	if grow := rssMid - rss0; grow > 20<<10 {
		t.Errorf("beta's RSS grew by %d KiB with the idle connections, want < 20 MiB", grow)
	}
	if drops["tcp_conn_limit"] < uint64(opened-8) || drops["tcp_handshake_timeout"] < 1 {
		t.Errorf("drops %v: want tcp_conn_limit >= %d and tcp_handshake_timeout >= 1", drops, opened-8)
	}
	if _, ok := c.peer(f.b.ip); !ok {
		t.Error("gamma's TCP session with beta did not survive")
	}
}

// TestInventedOrigins: a member floods beta with signed announcements for 5,000 invented nodes. Beta's
// announcement database stops at its cap (4,096 origins; the rest are refused and counted), beta's
// routes to alpha stay as they were, and alpha's proxied TCP flow to beta goes through the proxy.
func TestInventedOrigins(t *testing.T) {
	f := newFloodLab(t, floodOpts{extra: []string{"--tcp-proxy", "kcp"}})
	a, b, hm, bOnMB := f.a, f.b, f.hm, f.bOnMB
	pid := b.proc.Pid()
	cpu0, start := procCPU(t, pid), time.Now()
	const count = 5000
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := hm.RunErr(ctx, hostileBin, "-peer", netip.AddrPortFrom(bOnMB, 11010).String(), "-count", strconv.Itoa(count), "invent-origins")
	if err != nil || strings.TrimSpace(out) != fmt.Sprintf("sent %d", count) {
		t.Fatalf("hostile member: %v: %q", err, out)
	}
	var refused uint64
	waitFor(t, 10*time.Second, func() bool {
		refused = b.status().Drops["announce_db_full"]
		return refused >= count-4096+2 // beta and alpha hold two places (the member announces no one of its own)
	}, func() string {
		return fmt.Sprintf("beta refused %d invented origins (announce_db_full), want >= %d; drops %v", refused, count-4096+2, b.status().Drops)
	})
	time.Sleep(500 * time.Millisecond) // let the last recompute run
	t.Logf("beta refused %d of %d invented origins; CPU %v over %v", refused, count, procCPU(t, pid)-cpu0, time.Since(start).Round(time.Millisecond))
	if r, ok := routeTo(b, "10.144.144.1/32"); !ok || r.NodeID != a.status().NodeID || r.NextHop != "10.144.144.1" {
		t.Fatalf("beta's route to alpha after the flood: %+v (found %v)", r, ok)
	}
	if !strings.Contains(b.proc.Log(), "announcement database full") {
		t.Error("beta did not log that its announcement database is full")
	}
	mustPing(t, f.ha, b.ip, 3*time.Second)
	f.proxiedFlowsWork(t, 7830)
}

// TestKCPConversationFlood: a member sends 10,000 KCP segments that would each open a proxied
// conversation at beta, first claiming invented node IDs (all dropped: a segment comes only from the
// node whose session carries it), then as itself (beta holds at most 4,096 conversations with one
// node and refuses the rest). Alpha's proxied flows to beta work meanwhile, and the member's
// conversations are gone again once it is (its session dies after 5 s; they would also end at the
// 10 s open timeout; asserted within 30 s).
func TestKCPConversationFlood(t *testing.T) {
	f := newFloodLab(t, floodOpts{extra: []string{"--tcp-proxy", "kcp"}})
	b, hm, bOnMB := f.b, f.hm, f.bOnMB
	hostile := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		args = append([]string{"-peer", netip.AddrPortFrom(bOnMB, 11010).String(), "-count", "10000", "kcp-open"}, args...)
		if out, err := hm.RunErr(ctx, hostileBin, args...); err != nil || strings.TrimSpace(out) != "sent 10000" {
			t.Fatalf("hostile member %v: %v: %q", args, err, out)
		}
	}
	spoofed := b.status().Drops["src_spoofed"]
	hostile("-invent")
	var st = b.status()
	waitFor(t, 5*time.Second, func() bool { st = b.status(); return st.Drops["src_spoofed"]-spoofed >= 10000 }, func() string {
		return fmt.Sprintf("beta dropped %d of 10000 segments from invented nodes (src_spoofed); drops %v", st.Drops["src_spoofed"]-spoofed, st.Drops)
	})
	if st.Proxy.KCPConversations != 0 {
		t.Fatalf("beta holds %d KCP conversations after segments from invented nodes", st.Proxy.KCPConversations)
	}

	hostile()
	waitFor(t, 5*time.Second, func() bool { st = b.status(); return st.Proxy.KCPConversationsRefused >= 10000-4096 }, func() string {
		return fmt.Sprintf("beta refused %d conversations, holds %d; want >= %d refused; drops %v, proxy %+v", st.Proxy.KCPConversationsRefused, st.Proxy.KCPConversations, 10000-4096, st.Drops, st.Proxy)
	})
	if st.Proxy.KCPConversations > 4096 {
		t.Fatalf("beta holds %d KCP conversations, over the per-node cap of 4096", st.Proxy.KCPConversations)
	}
	t.Logf("member as itself: beta holds %d conversations, refused %d", st.Proxy.KCPConversations, st.Proxy.KCPConversationsRefused)
	f.proxiedFlowsWork(t, 7850)
	took := waitFor(t, 30*time.Second, func() bool { st = b.status(); return st.Proxy.KCPConversations <= 4 }, func() string {
		return fmt.Sprintf("beta still holds %d KCP conversations", st.Proxy.KCPConversations)
	})
	t.Logf("the member's conversations were gone %v after the flood", took.Round(100*time.Millisecond))
}

// TestForgedSourceHandshakes: a member floods beta with 4,000 valid first handshake messages a second
// from 200 source addresses for 8 s and never answers, as a sender with forged sources would. Beta
// goes under load and asks for cookies, so the flood never fills its handshake table
// (handshake_flood stays 0; without cookies 200 sources x 16 would fill its 1,024 places), while a fresh
// node gamma, which answers its cookie, joins within 2 s during the flood.
func TestForgedSourceHandshakes(t *testing.T) {
	f := newFloodLab(t, floodOpts{})
	dev := "to-" + f.hb.Name()
	for i := 0; i < 200; i++ {
		f.hm.Run(t, "ip", "addr", "add", fmt.Sprintf("172.16.2.%d/24", 10+i), "dev", dev)
	}
	flood := f.hm.Start(t, hostileBin, "flood-init", "-to", netip.AddrPortFrom(f.bOnMB, 11010).String(),
		"-srcs", "172.16.2.10,200", "-rate", "4000", "-seconds", "8")
	time.Sleep(2 * time.Second)
	c := startNode(t, f.hc, "gamma", nodeOpts{ip: "10.144.144.3/24", peers: []string{udpPeer(f.bOnCB)}})
	took := waitFor(t, 2*time.Second, func() bool { _, ok := c.peer(f.b.ip); return ok }, func() string {
		return fmt.Sprintf("gamma formed no session with beta during the flood; beta's drops %v", f.b.status().Drops)
	})
	out := runHostile(t, flood) // sent N cookies C answers A
	sent, cookies, answers := atoi(t, out[1]), atoi(t, out[3]), atoi(t, out[5])
	drops := f.b.status().Drops
	t.Logf("flood: %d first messages, %d cookie replies, %d answers; gamma joined in %v; beta's drops %v",
		sent, cookies, answers, took.Round(time.Millisecond), drops)
	if sent < 25000 {
		t.Fatalf("the flood sent only %d messages", sent)
	}
	if cookies == 0 || drops["handshake_cookie"] == 0 {
		t.Errorf("beta never asked for a cookie (%d replies, handshake_cookie %d)", cookies, drops["handshake_cookie"])
	}
	if drops["handshake_flood"] != 0 {
		t.Errorf("beta's handshake table filled up %d times (handshake_flood)", drops["handshake_flood"])
	}
	if _, ok := f.b.peer(f.a.ip); !ok {
		t.Error("beta lost its session with alpha during the flood")
	}
}
