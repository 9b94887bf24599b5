package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/netlab"
)

// peerAddrServer starts a socat TCP (or UDP) server on h bound to addr:port that answers every client
// with the address and port it sees the client come from ($SOCAT_PEERADDR $SOCAT_PEERPORT; socat would
// take a colon in the command for an option separator).
func peerAddrServer(t *testing.T, h *netlab.Host, proto string, addr netip.Addr, port int) {
	t.Helper()
	var listen string
	switch proto {
	case "tcp":
		listen = fmt.Sprintf("TCP-LISTEN:%d,bind=%s,reuseaddr,fork", port, addr)
	case "udp":
		listen = fmt.Sprintf("UDP-RECVFROM:%d,bind=%s,fork", port, addr)
	}
	h.Start(t, "socat", listen, "SYSTEM:echo $SOCAT_PEERADDR $SOCAT_PEERPORT")
}

// askPeerAddr connects from h (source port srcPort) to addr:port and returns what the server saw.
func askPeerAddr(t *testing.T, h *netlab.Host, proto string, addr netip.Addr, port, srcPort int) string {
	t.Helper()
	var got string
	netlab.Eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		target := fmt.Sprintf("%s:%s:%d,sourceport=%d,reuseaddr", strings.ToUpper(proto), addr, port, srcPort)
		cmd := h.Command(ctx, "socat", "-T2", "-", target)
		cmd.Stdin = strings.NewReader("hello\n")
		out, err := cmd.Output()
		got = strings.Replace(strings.TrimSpace(string(out)), " ", ":", 1)
		return err == nil && got != ""
	}, "%s server %s:%d never answered from host %s", proto, addr, port, h.Name())
	return got
}

// transferChecked sends size random bytes from host `from` to a socat sink on host `to` at addr and
// checks the sha256 of what arrived.
func transferChecked(t *testing.T, from, to *netlab.Host, addr netip.Addr, port int, size int) {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	sink := to.Start(t, "socat", "-u", fmt.Sprintf("TCP-LISTEN:%d,bind=%s,reuseaddr", port, addr), "CREATE:"+out)
	waitListening(t, to, fmt.Sprintf("%s:%d", addr, port))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if o, err := from.RunErr(ctx, "socat", "-u", "FILE:"+in, fmt.Sprintf("TCP:%s:%d", addr, port)); err != nil {
		t.Fatalf("send: %v: %s", err, o)
	}
	if _, err := sink.Wait(60 * time.Second); err != nil {
		t.Fatalf("sink did not finish: %v", err)
	}
	elapsed := time.Since(start)
	f, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256.Sum256(f); got != want {
		t.Fatalf("transfer corrupted: got %d bytes sha256 %s, want %d bytes sha256 %s",
			len(f), hex.EncodeToString(got[:8]), size, hex.EncodeToString(want[:8]))
	}
	t.Logf("%d MiB intact in %v (%.0f Mbit/s)", size>>20, elapsed.Round(time.Millisecond), float64(size)*8/elapsed.Seconds()/1e6)
}

// TestTunnel checks the two-node tunnel over each underlay: ping, the address a TCP and a UDP service
// sees, 64 MiB intact, what `weft peers` says, and a clean stop that leaves nothing behind.
func TestTunnel(t *testing.T) {
	for _, scheme := range []string{"udp", "tcp"} {
		t.Run(scheme, func(t *testing.T) {
			_, ha, hb := pair(t)
			a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24", listen: []string{scheme + "://0.0.0.0:11010"}})
			b := startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24", listen: []string{scheme + "://0.0.0.0:11010"},
				peers: []string{scheme + "://192.0.2.1:11010"}})

			mustPing(t, hb, ipA, 10*time.Second)
			mustPing(t, ha, ipB, 5*time.Second)

			pa := b.waitPeer(ipA, 5*time.Second)
			if !pa.Direct || pa.Tunnel != scheme || pa.Endpoint != "192.0.2.1:11010" || pa.NextHop != ipA.String() || pa.LastHandshake == nil {
				t.Errorf("beta's view of alpha: %+v; want direct over %s to 192.0.2.1:11010", pa, scheme)
			}
			if pb, _ := a.peer(ipB); pb.Hostname != "beta" || !pb.Direct {
				t.Errorf("alpha's view of beta: %+v", pb)
			}

			// A TCP service bound to the virtual IP sees the client's virtual IP and its own port.
			peerAddrServer(t, ha, "tcp", ipA, 7000)
			if got := askPeerAddr(t, hb, "tcp", ipA, 7000, 40123); got != "10.144.144.2:40123" {
				t.Errorf("TCP server on alpha saw client %q, want 10.144.144.2:40123", got)
			}
			// UDP, both ways.
			peerAddrServer(t, ha, "udp", ipA, 7001)
			if got := askPeerAddr(t, hb, "udp", ipA, 7001, 40124); got != "10.144.144.2:40124" {
				t.Errorf("UDP server on alpha saw client %q, want 10.144.144.2:40124", got)
			}
			peerAddrServer(t, hb, "udp", ipB, 7001)
			if got := askPeerAddr(t, ha, "udp", ipB, 7001, 40125); got != "10.144.144.1:40125" {
				t.Errorf("UDP server on beta saw client %q, want 10.144.144.1:40125", got)
			}

			transferChecked(t, hb, ha, ipA, 7002, 64<<20)

			st := a.status()
			if st.Hostname != "alpha" || st.IPv4 != "10.144.144.1/24" || len(st.NodeID) != 16 || st.MTU != 1400 ||
				len(st.Listeners) != 1 || st.Listeners[0] != scheme+"://0.0.0.0:11010" {
				t.Errorf("status: %+v", st)
			}
			if pb, _ := a.peer(ipB); pb.RxBytes < 64<<20 {
				t.Errorf("alpha counted %d bytes received from beta, want at least 64 MiB", pb.RxBytes)
			}

			// A clean stop removes the TUN device and the control socket.
			a.stop()
			b.stop()
			for _, h := range []*netlab.Host{ha, hb} {
				if out, err := h.RunErr(context.Background(), "ip", "link", "show", "weft0"); err == nil {
					t.Errorf("weft0 still exists on %s after stop: %s", h.Name(), out)
				}
			}
			for _, n := range []*weftNode{a, b} {
				if _, err := os.Stat(n.sock); !os.IsNotExist(err) {
					t.Errorf("control socket %s left behind (%v)", n.sock, err)
				}
			}
		})
	}
}

// TestWrongSecretAndNetwork: a node with another secret or network name gets no session; both sides say
// why in their logs; with the right secret the session forms.
func TestWrongSecretAndNetwork(t *testing.T) {
	_, ha, hb := pair(t)
	a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24"})
	cases := []struct {
		name  string
		extra []string
		opts  nodeOpts
	}{
		{"secret", nil, nodeOpts{secret: "wrong secret"}},
		{"network name", []string{"--network-name", "other-net"}, nodeOpts{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.opts
			o.ip = "10.144.144.2/24"
			o.peers = []string{"udp://192.0.2.1:11010"}
			o.extra = c.extra // a later --network-name replaces the harness's
			b := startNode(t, hb, "beta", o)
			b.proc.WaitLog(t, "no valid handshake answer from udp://192.0.2.1:11010", 20*time.Second)
			a.proc.WaitLog(t, "network name or secret mismatch from 192.0.2.2:11010", 5*time.Second)
			if canPing(hb, ipA) {
				t.Fatal("ping crossed the tunnel with a mismatched " + c.name)
			}
			if ps := a.peers(); len(ps) != 0 {
				t.Fatalf("alpha lists peers despite the mismatch: %+v", ps)
			}
			if d := a.status().Drops["psk_mismatch"]; d == 0 {
				t.Error("psk_mismatch drops not counted")
			}
			b.stop()
		})
	}
	// The mismatch log line is rate-limited: one line per source address per 10 s, not one per packet.
	if n := strings.Count(a.proc.Log(), "network name or secret mismatch from 192.0.2.2"); n > 4 {
		t.Errorf("mismatch logged %d times: not rate-limited", n)
	}
	b := startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24", peers: []string{"udp://192.0.2.1:11010"}})
	mustPing(t, hb, ipA, 10*time.Second)
	b.waitPeer(ipA, 5*time.Second)
}

// TestReconnectAfterKill: the node a peer dials is killed with SIGKILL (leaving a stale control socket)
// and restarted; the session comes back within BackoffMax + one handshake (asserted with a 3x margin).
func TestReconnectAfterKill(t *testing.T) {
	_, ha, hb := pair(t)
	a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24"})
	startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24", peers: []string{"udp://192.0.2.1:11010"}})
	mustPing(t, hb, ipA, 10*time.Second)

	for _, downFor := range []time.Duration{time.Second, 8 * time.Second} {
		a.proc.Kill()
		if _, err := os.Stat(a.sock); err != nil {
			t.Fatalf("expected the killed node's socket to be left behind: %v", err)
		}
		time.Sleep(downFor)
		a.restart()                                     // replaces the stale socket
		const bound = 3 * (4*time.Second + time.Second) // 3 x (BackoffMax + one handshake)
		took := mustPing(t, hb, ipA, bound)
		t.Logf("down for %v: ping through again %v after restart", downFor, took.Round(time.Millisecond))
	}
}

// TestSecondNodeRefused: a second `weft up` on the same control socket refuses to start while the first
// answers, and says why.
func TestSecondNodeRefused(t *testing.T) {
	_, ha, _ := pair(t)
	a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{}, a.args...)
	out, err := ha.RunErr(ctx, weftBin, append(args, "--listen", "udp://0.0.0.0:11011")...)
	if err == nil || !strings.Contains(out, "another weft node is running on "+a.sock) {
		t.Fatalf("second node: err=%v output:\n%s", err, out)
	}
	if _, err := a.statusErr(); err != nil {
		t.Fatalf("first node stopped answering after the refused start: %v", err)
	}
}

// TestGarbageDropped: random and truncated packets at the listening port are dropped and counted; the
// node keeps working.
func TestGarbageDropped(t *testing.T) {
	_, ha, hb := pair(t)
	a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24"})
	startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24", peers: []string{"udp://192.0.2.1:11010"}})
	mustPing(t, hb, ipA, 10*time.Second)
	payloads := [][]byte{{}, {1}, {2, 0, 0}, {4, 0, 0, 0, 1, 2, 3, 4}, bytes.Repeat([]byte{4}, 64), bytes.Repeat([]byte{1}, 200), {9, 9, 9}}
	for i := 0; i < 20; i++ {
		junk := make([]byte, 1+i*37)
		rand.Read(junk)
		payloads = append(payloads, junk)
	}
	for _, p := range payloads {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cmd := hb.Command(ctx, "socat", "-u", "-", "UDP:192.0.2.1:11010,sourceport=40999")
		cmd.Stdin = bytes.NewReader(p)
		_ = cmd.Run()
		cancel()
	}
	mustPing(t, hb, ipA, 5*time.Second)
	var total uint64
	netlab.Eventually(t, 5*time.Second, func() bool {
		total = 0
		for _, v := range a.status().Drops {
			total += v
		}
		return total >= 20
	}, "garbage not counted as drops: %+v", a.status().Drops)
	if strings.Contains(a.proc.Log(), "panic") {
		t.Fatal("node log mentions a panic")
	}
}

// TestBadFlags: malformed settings fail at start with a message naming the flag, before anything is touched.
func TestBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--ipv4", "10.144.144.1/24", "--network-name", "n", "--network-secret", "s", "--mtu", "70000"}, "--mtu"},
		{[]string{"--network-name", "n", "--network-secret", "s"}, "--ipv4 is required"},
		{[]string{"--ipv4", "10.144.144.1/24", "--network-secret", "s"}, "--network-name"},
		{[]string{"--ipv4", "10.144.144.1/24", "--network-name", "n"}, "--network-secret"},
		{[]string{"--ipv4", "10.144.144.1/24", "--network-name", "n", "--network-secret", "s", "--peer", "udp//1.2.3.4"}, "--peer"},
		{[]string{"--ipv4", "banana", "--network-name", "n", "--network-secret", "s"}, "--ipv4"},
		{[]string{"--no-such-flag"}, "unknown flag"},
	}
	for _, c := range cases {
		cmd := exec.Command(weftBin, append([]string{"up"}, c.args...)...)
		cmd.Env = append(os.Environ(), "WEFT_NETWORK_SECRET=")
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("weft up %v succeeded", c.args)
			continue
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("weft up %v: output does not mention %q:\n%s", c.args, c.want, out)
		}
	}
}

// TestHostnamePeerAndMetrics: a --peer given by host name (resolved through the namespace's own
// /etc/hosts, which `ip netns exec` mounts from /etc/netns/NS/hosts) connects, and the Prometheus
// endpoint counts the traffic per peer.
func TestHostnamePeerAndMetrics(t *testing.T) {
	_, ha, hb := pair(t)
	dir := filepath.Join("/etc/netns", hb.Netns())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte("127.0.0.1 localhost\n192.0.2.1 alpha.weft.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24", extra: []string{"--metrics-listen", "127.0.0.1:9100"}})
	startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24", peers: []string{"udp://alpha.weft.test:11010"}})
	mustPing(t, hb, ipA, 10*time.Second)
	hb.Run(t, "ping", "-c", "5", "-i", "0.2", "-s", "1000", ipA.String())

	metrics := ha.Run(t, "curl", "-sf", "http://127.0.0.1:9100/metrics")
	var rx string
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "weft_peer_rx_bytes_total{") && strings.Contains(line, `hostname="beta"`) {
			rx = line
		}
	}
	if rx == "" {
		t.Fatalf("no weft_peer_rx_bytes_total for beta in /metrics:\n%s", metrics)
	}
	var v float64
	fmt.Sscanf(rx[strings.LastIndex(rx, " ")+1:], "%g", &v)
	if v < 5*1028 {
		t.Errorf("beta's rx bytes = %v after 5 pings of 1028 bytes: %s", v, rx)
	}
	for _, want := range []string{"weft_peer_handshakes_total{", "weft_dropped_packets_total{reason=\"decrypt\"}", "weft_direct_peers 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
