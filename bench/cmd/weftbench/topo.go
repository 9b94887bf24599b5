package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weft-vpn/weft/bench/internal/lab"
)

// Underlay addresses: host a and host b share 192.0.2.0/24 (directly, or through the delay wire);
// host c (sub-ms network only) hangs off b on 198.51.100.0/24 and is reached from a only through
// b's weft relay.
const (
	underA  = "192.0.2.1"
	underB  = "192.0.2.2"
	underBC = "198.51.100.1"
	underC  = "198.51.100.2"
)

// Path names, in table order.
const (
	pathRaw = "raw"
	pathUDP = "udp"
	pathTCP = "tcp"
	pathKCP = "kcp"
)

// tunnelSpec is one weft mesh running side by side with the others in the same namespaces: its own
// TUN device, virtual prefix, port and underlay scheme.
type tunnelSpec struct {
	path   string
	dev    string
	prefix string // first three octets of the virtual /24
	scheme string // udp or tcp underlay
	port   int
	extra  []string
}

var tunnelSpecs = []tunnelSpec{
	{path: pathUDP, dev: "weft0", prefix: "10.144.144", scheme: "udp", port: 11010},
	{path: pathTCP, dev: "weft1", prefix: "10.144.145", scheme: "tcp", port: 11011},
	{path: pathKCP, dev: "weft2", prefix: "10.144.146", scheme: "udp", port: 11012, extra: []string{"--tcp-proxy", "kcp"}},
}

// network is one benchmark network: hosts a and b (and c), the weft nodes of every path, and the
// address of b per path.
type network struct {
	name   string // "sub-ms" or "20ms"
	lab    *lab.Lab
	a, b   *lab.Host
	c      *lab.Host               // nil unless built with a relay host
	dst    map[string]string       // path -> address of b
	nodes  map[string][]*lab.Proc  // path -> weft processes on a and b
	relay  string                  // virtual address of c on the udp mesh, "" without c
	iperfd map[*lab.Host]*lab.Proc // iperf3 server per host
}

// buildNetwork creates the namespaces, links and loss-free underlay; delay > 0 puts a userspace wire
// namespace between a and b that holds every frame for delay each way.
func buildNetwork(cfg *config, name string, delay time.Duration, withRelay bool) (*network, error) {
	l, err := lab.New(cfg.tmp)
	if err != nil {
		return nil, err
	}
	n := &network{name: name, lab: l, dst: map[string]string{pathRaw: underB}, nodes: map[string][]*lab.Proc{}}
	if err := n.build(cfg, delay, withRelay); err != nil {
		return n, fmt.Errorf("build %s network: %w", name, err)
	}
	return n, nil
}

func (n *network) build(cfg *config, delay time.Duration, withRelay bool) error {
	var err error
	if n.a, err = n.lab.Host("a"); err != nil {
		return err
	}
	if n.b, err = n.lab.Host("b"); err != nil {
		return err
	}
	if delay > 0 {
		w, err := n.lab.Host("w")
		if err != nil {
			return err
		}
		if err := n.lab.Link(n.a, "eth0", underA+"/24", w, "wa", ""); err != nil {
			return err
		}
		if err := n.lab.Link(n.b, "eth0", underB+"/24", w, "wb", ""); err != nil {
			return err
		}
		for _, ifc := range []string{"wa", "wb"} {
			if err := w.DisableOffloads(ifc, true); err != nil {
				return err
			}
		}
		_ = w.Sysctl("net.ipv6.conf.all.disable_ipv6", "1") // keeps the wire silent; not essential
		if _, err := w.Start(cfg.delayBin, "-a", "wa", "-b", "wb", "-delay", (delay / 2).String()); err != nil {
			return err
		}
	} else if err := n.lab.Link(n.a, "eth0", underA+"/24", n.b, "eth0", underB+"/24"); err != nil {
		return err
	}
	for _, h := range []*lab.Host{n.a, n.b} {
		if err := h.DisableOffloads("eth0", delay > 0); err != nil {
			return err
		}
	}
	if withRelay {
		if n.c, err = n.lab.Host("c"); err != nil {
			return err
		}
		if err := n.lab.Link(n.b, "eth1", underBC+"/24", n.c, "eth0", underC+"/24"); err != nil {
			return err
		}
	}
	if err := waitPing(n.a, underB, 10*time.Second); err != nil {
		return fmt.Errorf("underlay: %w", err)
	}
	for _, h := range []*lab.Host{n.b, n.c} {
		if h == nil {
			continue
		}
		if err := n.restartIperf(h); err != nil {
			return err
		}
		if _, err := h.Start(cfg.rrBin, "serve", "-listen", ":7000", "-timeout", "2h"); err != nil {
			return err
		}
	}
	for _, spec := range tunnelSpecs {
		if spec.path == pathKCP && !cfg.kcp {
			continue
		}
		if err := n.startMesh(cfg, spec); err != nil {
			return err
		}
	}
	return nil
}

// startMesh runs weft for one path on a (listening) and b (dialling a), plus c (dialling b) on the
// udp mesh when the network has a relay host, and waits until the tunnel carries pings.
func (n *network) startMesh(cfg *config, s tunnelSpec) error {
	listen := fmt.Sprintf("%s://0.0.0.0:%d", s.scheme, s.port)
	ipA, ipB := s.prefix+".1", s.prefix+".2"
	pa, err := n.startWeft(cfg, n.a, s, ipA, listen, "")
	if err != nil {
		return err
	}
	pb, err := n.startWeft(cfg, n.b, s, ipB, listen, fmt.Sprintf("%s://%s:%d", s.scheme, underA, s.port))
	if err != nil {
		return err
	}
	n.nodes[s.path] = []*lab.Proc{pa, pb}
	n.dst[s.path] = ipB
	if err := waitTunnel(n.a, ipB, pa, pb); err != nil {
		return fmt.Errorf("%s tunnel: %w", s.path, err)
	}
	if n.c != nil && s.path == pathUDP {
		ipC := s.prefix + ".3"
		pc, err := n.startWeft(cfg, n.c, s, ipC, listen, fmt.Sprintf("%s://%s:%d", s.scheme, underBC, s.port))
		if err != nil {
			return err
		}
		if err := waitTunnel(n.a, ipC, pa, pc); err != nil {
			return fmt.Errorf("relay a -> b -> c: %w", err)
		}
		n.relay = ipC
	}
	return nil
}

// startWeft runs one `weft up` on h.
func (n *network) startWeft(cfg *config, h *lab.Host, s tunnelSpec, ip, listen, peer string) (*lab.Proc, error) {
	dir := filepath.Join(cfg.tmp, fmt.Sprintf("%s-%s-%s", n.name, h.Name(), s.path))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	args := []string{"up", "--network-name", "bench-" + s.path, "--network-secret", "weft benchmark secret",
		"--ipv4", ip + "/24", "--hostname", h.Name(), "--dev", s.dev, "--listen", listen,
		"--control", filepath.Join(dir, "weft.sock"), "--state-dir", filepath.Join(dir, "state"), "--log-level", "warn"}
	if peer != "" {
		args = append(args, "--peer", peer)
	}
	args = append(args, s.extra...)
	return h.Start(cfg.weft, args...)
}

// waitTunnel waits up to 30s for a ping from h to dst to be answered, failing early (with the log) if
// a weft process exits.
func waitTunnel(h *lab.Host, dst string, procs ...*lab.Proc) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if done, code := p.Exited(); done {
				return fmt.Errorf("%s exited with code %d:\n%s", p, code, p.Log(20))
			}
		}
		if waitPing(h, dst, time.Second) == nil {
			return nil
		}
	}
	var logs []string
	for _, p := range procs {
		logs = append(logs, p.String()+":\n"+p.Log(10))
	}
	return fmt.Errorf("no ping reply from %s within 30s; logs:\n%s", dst, strings.Join(logs, "\n"))
}

// waitPing pings dst from h once a second until one reply arrives or timeout passes.
func waitPing(h *lab.Host, dst string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := h.Run(ctx, "ping", "-c", "1", "-W", "1", dst)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restartIperf (re)starts the iperf3 server on h: a client killed mid-test can leave the old one
// "busy running a test".
func (n *network) restartIperf(h *lab.Host) error {
	if n.iperfd == nil {
		n.iperfd = map[*lab.Host]*lab.Proc{}
	}
	if old := n.iperfd[h]; old != nil {
		old.Stop()
	}
	p, err := h.Start("iperf3", "-s")
	if err != nil {
		return err
	}
	n.iperfd[h] = p
	time.Sleep(300 * time.Millisecond) // let it listen
	return nil
}

// setLoss sets the random loss on both ends' ingress (so it applies each way).
func (n *network) setLoss(permille int) error {
	for _, h := range []*lab.Host{n.a, n.b} {
		if err := h.SetLoss("eth0", permille); err != nil {
			return err
		}
	}
	return nil
}

// paths returns the paths this network carries, in table order.
func (n *network) paths() []string {
	var ps []string
	for _, p := range []string{pathRaw, pathUDP, pathTCP, pathKCP} {
		if _, ok := n.dst[p]; ok {
			ps = append(ps, p)
		}
	}
	return ps
}
