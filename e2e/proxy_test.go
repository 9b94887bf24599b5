package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/control"
	"github.com/weft-vpn/weft/internal/netlab"
)

// Every test here proves its traffic went through the KCP proxy, not the plain tunnel: the flow is
// listed by `weft proxy` on both nodes with the same 4-tuple while it is open, or the proxy counters of
// `weft status` (flows opened or refused, bytes carried over KCP) cover it.

// proxyPair is the two-node setup: alpha (10.144.144.1) runs the services; beta (10.144.144.2) runs the
// clients with --tcp-proxy kcp.
// Both nodes serve pprof (--debug-pprof): the leak checks count goroutines with it.
func proxyPair(t *testing.T, alphaExtra ...string) (a, b *weftNode, ha, hb *netlab.Host) {
	_, ha, hb = pair(t)
	a = startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24", extra: append([]string{"--debug-pprof"}, alphaExtra...)})
	b = startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24", peers: []string{"udp://192.0.2.1:11010"},
		extra: []string{"--tcp-proxy", "kcp", "--debug-pprof"}})
	mustPing(t, hb, ipA, 10*time.Second)
	return a, b, ha, hb
}

func (n *weftNode) proxyFlows() []control.ProxyFlow {
	n.t.Helper()
	var fs []control.ProxyFlow
	if err := n.cli(&fs, "proxy"); err != nil {
		n.t.Fatal(err)
	}
	return fs
}

// waitFlowOnBoth waits until the flow src -> dst is listed by the source node and by the destination
// node, with the same 4-tuple and the right sides.
func waitFlowOnBoth(t *testing.T, source, dest *weftNode, src, dst string) {
	t.Helper()
	has := func(n *weftNode, side string) bool {
		for _, f := range n.proxyFlows() {
			if f.Src == src && f.Dst == dst && f.Side == side && f.Transport == "kcp" {
				return true
			}
		}
		return false
	}
	netlab.Eventually(t, 10*time.Second, func() bool { return has(source, "source") && has(dest, "destination") },
		"flow %s -> %s not listed on both nodes: source %+v, destination %+v", src, dst, source.proxyFlows(), dest.proxyFlows())
}

// startProbe runs tcpprobe in a server mode on h and waits until it listens.
func startProbe(t *testing.T, h *netlab.Host, mode, addr string) *netlab.Proc {
	t.Helper()
	p := h.Start(t, probeBin, mode, addr)
	p.WaitLog(t, "listening", 10*time.Second)
	return p
}

func runProbe(t *testing.T, h *netlab.Host, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := h.RunErr(ctx, probeBin, args...)
	if err != nil {
		t.Fatalf("tcpprobe %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(out)
}

// TestProxyClassic reproduces the classic report: nc listening on the virtual IP, a client through the
// proxy; the server receives the data and reports the connection from the client's own address.
func TestProxyClassic(t *testing.T) {
	a, b, ha, hb := proxyPair(t)
	server := ha.Start(t, "nc", "-lvn", "10.144.144.1", "25666")
	waitListening(t, ha, "10.144.144.1:25666")
	client := hb.Start(t, "sh", "-c", "(echo hello; sleep 3) | nc -N -p 41822 10.144.144.1 25666")
	waitFlowOnBoth(t, b, a, "10.144.144.2:41822", "10.144.144.1:25666")
	if _, err := client.Wait(15 * time.Second); err != nil {
		t.Fatalf("client: %v", err)
	}
	server.WaitLog(t, "hello", 5*time.Second)
	if log := server.Log(); !strings.Contains(log, "10.144.144.2") || !strings.Contains(log, "41822") {
		t.Errorf("nc did not report the connection from 10.144.144.2 port 41822:\n%s", log)
	}
}

// TestProxyRedis: redis bound only to the virtual IP; SET/GET through the proxy, and CLIENT INFO shows
// the client's own address and port and the address it dialled.
func TestProxyRedis(t *testing.T) {
	a, b, ha, hb := proxyPair(t)
	ha.Start(t, "redis-server", "--bind", "10.144.144.1", "--port", "6379", "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--daemonize", "no", "--dir", t.TempDir())
	waitListening(t, ha, "10.144.144.1:6379")
	before := b.status().Proxy
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := hb.Command(ctx, "socat", "-T3", "-", "TCP:10.144.144.1:6379,sourceport=41999")
	cmd.Stdin = strings.NewReader("SET weft kept\r\nGET weft\r\nCLIENT INFO\r\nQUIT\r\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis client: %v\n%s", err, out)
	}
	for _, want := range []string{"+OK", "kept", "addr=10.144.144.2:41999", "laddr=10.144.144.1:6379"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("redis answer lacks %q:\n%s", want, out)
		}
	}
	after := b.status().Proxy
	if after.FlowsOpened <= before.FlowsOpened || after.KCPBytesTx <= before.KCPBytesTx {
		t.Errorf("the redis connection did not go through the proxy: before %+v after %+v", before, after)
	}
	if a.status().Proxy.KCPBytesRx == 0 {
		t.Error("alpha counted no bytes received over KCP")
	}
}

// TestProxyConnectionSemantics: refusal, unreachable, half-close and reset cross the proxy as they would
// cross a plain network.
func TestProxyConnectionSemantics(t *testing.T) {
	a, b, ha, hb := proxyPair(t)

	t.Run("closed port refused promptly", func(t *testing.T) {
		before := b.status().Proxy.FlowsRefused
		out := runProbe(t, hb, 10*time.Second, "connect", "10.144.144.1:25999")
		f := strings.Fields(out)
		if len(f) != 2 || f[0] != "refused" {
			t.Fatalf("connect to a closed port: %q, want refused", out)
		}
		ms, _ := strconv.Atoi(f[1])
		const bound = 250 // ms on a clean link; asserted with a 3x margin
		if ms > 3*bound {
			t.Errorf("refusal took %d ms, want under %d", ms, 3*bound)
		}
		if b.status().Proxy.FlowsRefused <= before {
			t.Error("refusal not counted by the proxy: the SYN did not go through it")
		}
		t.Logf("ECONNREFUSED after %d ms", ms)
	})

	t.Run("unreachable destination fails, no hang", func(t *testing.T) {
		ha.Run(t, "nft", "add table inet e2e_drop")
		ha.Run(t, "nft", "add chain inet e2e_drop in { type filter hook input priority 0 ; }")
		ha.Run(t, "nft", "add rule inet e2e_drop in tcp dport 25998 drop")
		out := runProbe(t, hb, 60*time.Second, "connect", "10.144.144.1:25998")
		if strings.HasPrefix(out, "connected") {
			t.Fatalf("connect to a black-holed port succeeded: %q", out)
		}
		t.Logf("black-holed destination: %s", out)
	})

	t.Run("half-close carries the reply", func(t *testing.T) {
		ha.Start(t, "socat", "TCP-LISTEN:7100,bind=10.144.144.1,reuseaddr", "SYSTEM:cat >/dev/null; echo reply-after-eof")
		waitListening(t, ha, "10.144.144.1:7100")
		before := b.status().Proxy.FlowsOpened
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := hb.Command(ctx, "socat", "-t5", "-T10", "-", "TCP:10.144.144.1:7100,sourceport=41100")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		stdin.Write([]byte("request\n"))
		// The client's FIN goes out only once the flow is listed by the proxy on both nodes.
		waitFlowOnBoth(t, b, a, "10.144.144.2:41100", "10.144.144.1:7100")
		stdin.Close()
		if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "reply-after-eof") {
			t.Fatalf("after the client's FIN the reply did not arrive: %v %q", err, out.String())
		}
		if got := b.status().Proxy.FlowsOpened - before; got < 1 {
			t.Errorf("beta counted %d proxied flows opened, want 1: the connection did not go through the proxy", got)
		}
	})

	t.Run("reset is carried", func(t *testing.T) {
		startProbe(t, ha, "rst-server", "10.144.144.1:7200")
		before := b.status().Proxy
		out := runProbe(t, hb, 20*time.Second, "hold", "10.144.144.1:7200")
		if !strings.Contains(out, "client: reset") {
			t.Fatalf("server reset seen by the client as %q, want a reset", out)
		}
		// Too short-lived to be listed reliably; the counters show it went through the proxy and the
		// proxy carried the reset.
		var now control.ProxyStatus
		waitFor(t, 5*time.Second, func() bool {
			now = b.status().Proxy
			return now.FlowsOpened > before.FlowsOpened && now.FlowsReset > before.FlowsReset
		}, func() string {
			return fmt.Sprintf("the reset connection did not go through the proxy: beta's counters before %+v, after %+v", before, now)
		})
	})
	t.Run("client reset of a stalled flow is carried", func(t *testing.T) {
		// The server never reads, so beta's pump for the client's bytes is blocked on a shut window
		// when the client resets; the reset must still reach the server and free the flow on both
		// nodes, not wait for a window that never opens.
		const stallAddr, port = "10.144.144.1:7201", 41201
		src := fmt.Sprintf("10.144.144.2:%d", port)
		startProbe(t, ha, "stall-server", stallAddr)
		x, _, upB := stallFlow(t, a, b, hb, stallAddr, port)
		serverConns := func() string {
			return strings.TrimSpace(ha.Run(t, "ss", "-Htn", "state", "established", "src", stallAddr, "dst", src))
		}
		if serverConns() == "" {
			t.Fatalf("the stall server holds no connection from %s before the reset", src)
		}
		before := b.status().Proxy.FlowsReset
		x.Kill()                  // the client's socket has linger 0: its kernel sends a RST
		const bound = time.Second // asserted with a 3x margin
		took := waitFor(t, 3*bound, func() bool {
			return !flowListed(a, src) && !flowListed(b, src) && serverConns() == ""
		}, func() string {
			return fmt.Sprintf("client reset not carried: flow listed on alpha %v, on beta %v; server's connection %q",
				flowListed(a, src), flowListed(b, src), serverConns())
		})
		if got := b.status().Proxy.FlowsReset - before; got < 1 {
			t.Errorf("beta counted %d proxied flows reset, want 1", got)
		}
		t.Logf("client reset a flow stalled with %d bytes in beta's hands: gone on both nodes and at the server after %v",
			upB, took.Round(time.Millisecond))
	})
	if st := a.status().Proxy; st.FlowsOpened == 0 {
		t.Errorf("alpha opened no proxied flows: %+v", st)
	}
}

// TestProxyIntegrity: 32 concurrent flows of 4 MiB each, echoed and checked with sha256, on a clean link
// and on a link that drops 3% of packets each way.
func TestProxyIntegrity(t *testing.T) {
	a, b, ha, hb := proxyPair(t)
	startProbe(t, ha, "echo-server", "10.144.144.1:7300")
	for _, loss := range []int{0, 30} {
		t.Run(fmt.Sprintf("loss %d permille", loss), func(t *testing.T) {
			if loss > 0 {
				for _, h := range []*netlab.Host{ha, hb} {
					h.DisableOffloads(t, "eth0")
					h.SetLoss(t, "eth0", loss)
				}
				defer func() {
					ha.SetLoss(t, "eth0", 0)
					hb.SetLoss(t, "eth0", 0)
				}()
			}
			before := a.status().Proxy.KCPBytesRx
			start := time.Now()
			out := runProbe(t, hb, 5*time.Minute, "flood", "10.144.144.1:7300", "32", strconv.Itoa(4<<20))
			if !strings.HasPrefix(out, "ok 32 flows") {
				t.Fatalf("flood: %s", out)
			}
			got := a.status().Proxy.KCPBytesRx - before
			if got < 32*4<<20 {
				t.Errorf("alpha received %d bytes over KCP, want at least %d: the flows did not all use the proxy", got, 32*4<<20)
			}
			t.Logf("32 x 4 MiB echoed intact in %v (%.0f Mbit/s each way)", time.Since(start).Round(time.Millisecond),
				float64(32*4<<20)*8/time.Since(start).Seconds()/1e6)
		})
	}
	if st := b.status().Proxy; st.FlowsOpened < 64 {
		t.Errorf("beta opened %d proxied flows, want at least 64", st.FlowsOpened)
	}
}

// TestProxyRelayed: A - B - C with the proxy on A and C only; KCP runs end to end through B, and C's
// service sees A's own address and port.
func TestProxyRelayed(t *testing.T) {
	kcp := []string{"--tcp-proxy", "kcp"}
	l := newLine(t, kcp, kcp, nil)
	a, b, c, ha, hc := l.a, l.b, l.c, l.ha, l.hc
	mustPing(t, ha, ipC, 15*time.Second)
	hc.Start(t, "socat", "TCP-LISTEN:7000,bind=10.144.144.3,reuseaddr,fork", "SYSTEM:echo $SOCAT_PEERADDR $SOCAT_PEERPORT; sleep 2")
	waitListening(t, hc, "10.144.144.3:7000")
	client := ha.Start(t, "socat", "-T5", "-", "TCP:10.144.144.3:7000,sourceport=40500")
	waitFlowOnBoth(t, a, c, "10.144.144.1:40500", "10.144.144.3:7000")
	if fs := b.proxyFlows(); len(fs) != 0 {
		t.Errorf("the relay lists proxied flows of its own: %+v", fs)
	}
	client.Wait(10 * time.Second)
	if log := client.Log(); !strings.Contains(log, "10.144.144.1 40500") {
		t.Errorf("gamma's service saw %q, want 10.144.144.1 40500", log)
	}
}

// TestProxySubnet: to a LAN host behind C with --subnet-snat=false, the proxied flow keeps A's address;
// with --kernel-forward-only the LAN flow is not proxied (the kernel alone forwards it) while a flow to
// C's own address, at the same time, is.
func TestProxySubnet(t *testing.T) {
	for _, kfo := range []bool{false, true} {
		t.Run(fmt.Sprintf("kernel-forward-only=%v", kfo), func(t *testing.T) {
			extra := []string{"--subnet-snat=false"}
			if kfo {
				extra = append(extra, "--kernel-forward-only")
			}
			lab := netlab.New(t)
			ha, hc, hl := lab.Host("a"), lab.Host("c"), lab.Host("l")
			_, cOnAC := link(lab, ha, hc, 1)
			lab.Link(hc, "lan0", netip.MustParsePrefix("192.168.50.1/24"), hl, "eth0", netip.MustParsePrefix("192.168.50.10/24"))
			hl.AddRoute(t, netip.MustParsePrefix("10.144.144.0/24"), netip.MustParseAddr("192.168.50.1"))
			a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24", peers: []string{udpPeer(cOnAC)}, extra: []string{"--tcp-proxy", "kcp"}})
			c := startNode(t, hc, "gamma", nodeOpts{ip: "10.144.144.3/24", extra: append([]string{"--subnet", "192.168.50.0/24"}, extra...)})
			mustPing(t, ha, lanHost, 15*time.Second)
			wantProxy := "allow"
			if kfo {
				wantProxy = "deny"
			}
			if r, _ := routeTo(a, "192.168.50.0/24"); r.Proxy != wantProxy {
				t.Errorf("route to the LAN announced proxy %q, want %q", r.Proxy, wantProxy)
			}
			hl.Start(t, "socat", "TCP-LISTEN:7000,bind=192.168.50.10,reuseaddr,fork", "SYSTEM:echo $SOCAT_PEERADDR $SOCAT_PEERPORT; sleep 3")
			hc.Start(t, "socat", "TCP-LISTEN:7001,bind=10.144.144.3,reuseaddr,fork", "SYSTEM:sleep 3")
			waitListening(t, hl, "192.168.50.10:7000")
			waitListening(t, hc, "10.144.144.3:7001")
			own := ha.Start(t, "socat", "-T5", "-", "TCP:10.144.144.3:7001,sourceport=40601")
			lan := ha.Start(t, "socat", "-T5", "-", "TCP:192.168.50.10:7000,sourceport=40600")
			waitFlowOnBoth(t, a, c, "10.144.144.1:40601", "10.144.144.3:7001")
			listed := false
			for _, f := range a.proxyFlows() {
				listed = listed || f.Dst == "192.168.50.10:7000"
			}
			if listed == kfo {
				t.Errorf("LAN flow listed by weft proxy = %v with --kernel-forward-only=%v", listed, kfo)
			}
			lan.Wait(10 * time.Second)
			own.Wait(10 * time.Second)
			if log := lan.Log(); !strings.Contains(log, "10.144.144.1 40600") {
				t.Errorf("LAN service saw %q, want alpha's 10.144.144.1 40600", log)
			}
		})
	}
}

// TestProxyPeerLost: the relay between client and server dies mid-stream; within the dead-peer timeout
// both ends see their connection reset, nothing hangs.
func TestProxyPeerLost(t *testing.T) {
	l := newLine(t, []string{"--tcp-proxy", "kcp"}, nil, nil)
	a, b, c, ha, hc := l.a, l.b, l.c, l.ha, l.hc
	mustPing(t, ha, ipC, 15*time.Second)
	server := startProbe(t, hc, "hold-server", "10.144.144.3:7400")
	client := ha.Start(t, probeBin, "hold", "10.144.144.3:7400")
	client.WaitLog(t, "connected", 10*time.Second)
	netlab.Eventually(t, 10*time.Second, func() bool { return len(a.proxyFlows()) == 1 && len(c.proxyFlows()) == 1 }, "flow not listed")
	b.proc.Kill()
	killed := time.Now()
	const bound = 5*time.Second + 2*time.Second // DeadPeerTimeout + 2 s
	client.WaitLog(t, "client: reset", 3*bound)
	server.WaitLog(t, "server: reset", 3*bound)
	t.Logf("both ends reset %v after the relay died", time.Since(killed).Round(time.Millisecond))
}

// TestProxyNoLeaks: 1000 short proxied connections; once TIME_WAIT has passed, the proxy tables are empty
// and goroutines and open files of both nodes are back to their level before.
func TestProxyNoLeaks(t *testing.T) {
	a, b, ha, hb := proxyPair(t)
	startProbe(t, ha, "echo-server", "10.144.144.1:7500")
	runProbe(t, hb, time.Minute, "many", "10.144.144.1:7500", "5") // warm up: sessions, pools
	time.Sleep(20 * time.Second)                                   // the warm-up flows leave TIME_WAIT
	type level struct{ goroutines, fds int }
	measure := func(n *weftNode) level {
		out, err := hostCmd("curl", "-s", "--unix-socket", n.sock, "http://weft/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		var g int
		if _, err := fmt.Sscanf(out, "goroutine profile: total %d", &g); err != nil {
			t.Fatalf("goroutine profile of %s: %v: %.200q", n.name, err, out)
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(n.proc.Pid()), "fd"))
		return level{g, len(fds)}
	}
	beforeA, beforeB := measure(a), measure(b)
	before := b.status().Proxy.FlowsOpened
	start := time.Now()
	if out := runProbe(t, hb, 5*time.Minute, "many", "10.144.144.1:7500", "1000"); !strings.HasPrefix(out, "ok 1000") {
		t.Fatalf("many: %s", out)
	}
	t.Logf("1000 proxied connections in %v", time.Since(start).Round(time.Millisecond))
	if got := b.status().Proxy.FlowsOpened - before; got < 1000 {
		t.Fatalf("only %d of 1000 connections went through the proxy", got)
	}
	netlab.Eventually(t, 45*time.Second, func() bool { return len(a.proxyFlows()) == 0 && len(b.proxyFlows()) == 0 },
		"proxy tables not empty: alpha %d, beta %d flows", len(a.proxyFlows()), len(b.proxyFlows()))
	for _, c := range []struct {
		n      *weftNode
		before level
	}{{a, beforeA}, {b, beforeB}} {
		var now level
		netlab.Eventually(t, 30*time.Second, func() bool {
			now = measure(c.n)
			return now.goroutines <= c.before.goroutines+5 && now.fds <= c.before.fds+2
		}, "%s leaks: goroutines %d -> %d, fds %d -> %d", c.n.name, c.before.goroutines, now.goroutines, c.before.fds, now.fds)
		t.Logf("%s: goroutines %d -> %d, fds %d -> %d", c.n.name, c.before.goroutines, now.goroutines, c.before.fds, now.fds)
	}
}

// hostCmd runs a command on the test machine itself (for the control socket, which lives in the shared
// filesystem).
func hostCmd(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := osexec.CommandContext(ctx, name, args...).Output()
	return string(out), err
}
