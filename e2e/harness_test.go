// Package e2e runs real weft binaries in network namespaces and checks what real tools see.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/control"
	"github.com/weft-vpn/weft/internal/netlab"
)

// weftBin is the binary under test, probeBin the tests' TCP tool (tcpprobe) and hostileBin the hostile
// member (e2e/hostile), built once by TestMain.
var weftBin, probeBin, hostileBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "weft-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	weftBin = filepath.Join(dir, "weft")
	probeBin = filepath.Join(dir, "tcpprobe")
	hostileBin = filepath.Join(dir, "hostile")
	for bin, pkg := range map[string]string{weftBin: "../cmd/weft", probeBin: "./tcpprobe", hostileBin: "./hostile"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkg+":", err)
			return 1
		}
	}
	if os.Geteuid() == 0 {
		// A missing tool would surface as a misleading failure ("no ping reply"); name it instead.
		var missing []string
		for _, tool := range []string{"ip", "nft", "ping", "nc", "socat", "redis-server", "ethtool", "curl", "ss", "sysctl", "conntrack"} {
			if _, err := exec.LookPath(tool); err != nil {
				missing = append(missing, tool)
			}
		}
		if len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "e2e: missing tools %v: run scripts/install-deps.sh (make deps)\n", missing)
			return 1
		}
		// Debris of a killed earlier run would collide with nothing (names are random) but wastes memory.
		_ = netlab.SweepAll()
	}
	return m.Run()
}

const (
	testNetwork = "e2e-net"
	testSecret  = "correct horse battery staple"
)

// weftNode is one `weft up` process in a test host.
type weftNode struct {
	t     *testing.T
	host  *netlab.Host
	name  string
	ip    netip.Addr
	sock  string
	state string
	args  []string
	proc  *netlab.Proc
}

// nodeOpts are the flags of a node beyond the ones every test node gets.
type nodeOpts struct {
	ip     string // virtual address with prefix, e.g. 10.144.144.1/24
	listen []string
	peers  []string
	extra  []string
	secret string
	key    string // node.key contents to start with (hex private key); "" lets the node make one
	// Certificate mode: the CA's certificate file and the directory of this node's node.crt and
	// node.key (from weft cert sign); --ipv4 is then left to default to the certificate's.
	ca, certDir string
	noSecret    bool // run without --network-secret (certificate mode derives the network key from the CA)
}

// startNode runs `weft up` in host h and waits until its control socket answers.
func startNode(t *testing.T, h *netlab.Host, name string, o nodeOpts) *weftNode {
	t.Helper()
	dir := t.TempDir()
	n := &weftNode{t: t, host: h, name: name, sock: filepath.Join(dir, "weft.sock"), state: filepath.Join(dir, "state")}
	n.ip = netip.MustParsePrefix(o.ip).Addr()
	if o.key != "" {
		if err := os.MkdirAll(n.state, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(n.state, "node.key"), []byte(o.key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	secret := o.secret
	if secret == "" {
		secret = testSecret
	}
	n.args = []string{"up", "--network-name", testNetwork, "--hostname", name, "--control", n.sock, "--state-dir", n.state, "--log-level", "debug"}
	if !o.noSecret {
		n.args = append(n.args, "--network-secret", secret)
	}
	if o.certDir != "" {
		n.args = append(n.args, "--ca", o.ca, "--cert", filepath.Join(o.certDir, "node.crt"), "--cert-key", filepath.Join(o.certDir, "node.key"))
	} else {
		n.args = append(n.args, "--ipv4", o.ip)
	}
	if len(o.listen) == 0 {
		o.listen = []string{"udp://0.0.0.0:11010"}
	}
	for _, l := range o.listen {
		n.args = append(n.args, "--listen", l)
	}
	for _, p := range o.peers {
		n.args = append(n.args, "--peer", p)
	}
	if os.Getenv("WEFT_E2E_STALLDIR") != "" {
		n.args = append(n.args, "--debug-pprof") // stallDump reads the goroutines
	}
	n.args = append(n.args, o.extra...)
	n.start()
	return n
}

func (n *weftNode) start() {
	n.t.Helper()
	n.proc = n.host.Start(n.t, weftBin, n.args...)
	n.waitReady()
}

// restart starts the node again with the same flags, state and socket (after a kill or stop).
func (n *weftNode) restart() { n.t.Helper(); n.start() }

func (n *weftNode) waitReady() {
	n.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := n.statusErr(); err == nil {
			return
		}
		if code, err := n.proc.Wait(0); err == nil {
			n.t.Fatalf("node %s exited with code %d before it was up:\n%s", n.name, code, n.proc.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.t.Fatalf("node %s: control socket did not answer within 15s:\n%s", n.name, n.proc.Log())
}

// stop sends SIGTERM and waits for a clean exit.
func (n *weftNode) stop() {
	n.t.Helper()
	if err := n.proc.Signal(os.Interrupt); err != nil {
		n.t.Fatalf("signal %s: %v", n.name, err)
	}
	code, err := n.proc.Wait(10 * time.Second)
	if err != nil || code != 0 {
		n.t.Fatalf("node %s did not exit cleanly after SIGINT (code %d, %v):\n%s", n.name, code, err, n.proc.Log())
	}
}

// cli runs a weft read-only command against this node and decodes its JSON.
func (n *weftNode) cli(v any, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args = append(args, "--json", "--control", n.sock)
	out, err := exec.CommandContext(ctx, weftBin, args...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return fmt.Errorf("weft %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return err
	}
	return json.Unmarshal(out, v)
}

func (n *weftNode) statusErr() (control.Status, error) {
	var s control.Status
	err := n.cli(&s, "status")
	return s, err
}

func (n *weftNode) status() control.Status {
	n.t.Helper()
	s, err := n.statusErr()
	if err != nil {
		n.t.Fatal(err)
	}
	return s
}

func (n *weftNode) peers() []control.Peer {
	n.t.Helper()
	var ps []control.Peer
	if err := n.cli(&ps, "peers"); err != nil {
		n.t.Fatal(err)
	}
	return ps
}

func (n *weftNode) routes() []control.Route {
	n.t.Helper()
	var rs []control.Route
	if err := n.cli(&rs, "routes"); err != nil {
		n.t.Fatal(err)
	}
	return rs
}

// peer returns the peer entry with the given virtual IP, if listed.
func (n *weftNode) peer(ip netip.Addr) (control.Peer, bool) {
	n.t.Helper()
	for _, p := range n.peers() {
		if p.IPv4 == ip.String() {
			return p, true
		}
	}
	return control.Peer{}, false
}

// waitPeer waits until ip is listed by `weft peers` and returns the entry.
func (n *weftNode) waitPeer(ip netip.Addr, timeout time.Duration) control.Peer {
	n.t.Helper()
	var p control.Peer
	netlab.Eventually(n.t, timeout, func() bool {
		var ok bool
		p, ok = n.peer(ip)
		return ok
	}, "node %s never listed peer %s", n.name, ip)
	return p
}

// canPing reports whether one ping from host h to dst is answered within a second.
func canPing(h *netlab.Host, dst netip.Addr) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := h.RunErr(ctx, "ping", "-c", "1", "-W", "1", dst.String())
	return err == nil
}

// mustPing waits until a ping from h to dst is answered.
func mustPing(t *testing.T, h *netlab.Host, dst netip.Addr, timeout time.Duration) time.Duration {
	t.Helper()
	return netlab.Eventually(t, timeout, func() bool { return canPing(h, dst) }, "no ping reply from %s on host %s", dst, h.Name())
}

// waitListening waits until a TCP socket listens on addr ("ip:port") in host h.
func waitListening(t *testing.T, h *netlab.Host, addr string) {
	t.Helper()
	netlab.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(h.Run(t, "ss", "-Htln"), addr+" ")
	}, "nothing listens on %s in host %s", addr, h.Name())
}

// pair is two hosts on one veth link (192.0.2.1 and 192.0.2.2), the usual two-node setup.
func pair(t *testing.T) (*netlab.Lab, *netlab.Host, *netlab.Host) {
	lab := netlab.New(t)
	a, b := lab.Host("a"), lab.Host("b")
	lab.Link(a, "eth0", netip.MustParsePrefix("192.0.2.1/24"), b, "eth0", netip.MustParsePrefix("192.0.2.2/24"))
	return lab, a, b
}

var (
	ipA = netip.MustParseAddr("10.144.144.1")
	ipB = netip.MustParseAddr("10.144.144.2")
	ipC = netip.MustParseAddr("10.144.144.3")
)
