package demo

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const (
	// servicePort is where the demo's TCP services listen.
	servicePort = 7000
	// clientPort and lanClientPort are the fixed source ports of the demo's TCP clients, so the user
	// can see that the service got exactly that port.
	clientPort    = 41000
	lanClientPort = 41001
	// peerAddrReply makes socat answer each client with the address and port it sees the client come
	// from. socat splits addresses at ':' and options at ',', so the command has neither.
	peerAddrReply = "SYSTEM:echo $SOCAT_PEERADDR $SOCAT_PEERPORT"
)

// showAll runs the shown steps in order; failures are remembered in d.failed.
func (d *demo) showAll(ctx context.Context) {
	d.check(ctx, "1. alpha pings gamma", d.showPing)
	d.check(ctx, "2. A TCP service on gamma sees the real client", d.showTCP)
	d.check(ctx, "3. Redis on gamma sees the real client", d.showRedis)
	d.check(ctx, "4. A LAN host behind gamma", d.showLAN)
	d.check(ctx, "5. What alpha knows: weft peers, weft routes", d.showTables)
	d.check(ctx, "6. The relay: weft status on beta", d.showRelay)
	d.check(ctx, "7. The transparent TCP proxy: weft proxy on alpha and gamma", d.showProxy)
	d.check(ctx, "8. Certificate mode: the CA decides who owns an address", d.showCert)
}

// showPing pings gamma's virtual IP from alpha.
func (d *demo) showPing(ctx context.Context) error {
	d.p.say("no underlay path joins alpha and gamma: beta relays the encrypted packets.")
	if err := d.waitPing(ctx, d.alpha, ipGamma, 10*time.Second); err != nil {
		return err
	}
	d.p.command("alpha", "ping -c 3 "+ipGamma)
	out, err := d.alpha.Run(ctx, "ping", "-c", "3", "-i", "0.3", ipGamma)
	d.p.block(grepLines(out, "bytes from", "packets transmitted"))
	if err != nil {
		return fmt.Errorf("ping from alpha to gamma: %w", err)
	}
	d.p.ok("gamma answers alpha through beta")
	return nil
}

// showTCP runs a socat service on gamma bound only to gamma's virtual IP and connects to it from alpha
// with a fixed source port.
func (d *demo) showTCP(ctx context.Context) error {
	d.p.say("the service listens only on gamma's virtual IP and replies with the address it sees.")
	d.p.command("gamma", fmt.Sprintf("socat TCP-LISTEN:%d,bind=%s,fork %s", servicePort, ipGamma, quoteSystem(peerAddrReply)))
	if _, err := d.topo.Start(d.gamma, "gamma-socat", "socat",
		fmt.Sprintf("TCP-LISTEN:%d,bind=%s,reuseaddr,fork", servicePort, ipGamma), peerAddrReply); err != nil {
		return err
	}
	d.p.command("alpha", fmt.Sprintf("socat - TCP:%s:%d,sourceport=%d", ipGamma, servicePort, clientPort))
	seen, err := d.askPeerAddr(ctx, d.alpha, ipGamma, clientPort)
	if err != nil {
		return err
	}
	d.p.say("the service on gamma saw the client as %s", seen)
	if want := fmt.Sprintf("%s:%d", ipAlpha, clientPort); seen != want {
		return fmt.Errorf("the service saw %s, want %s", seen, want)
	}
	d.p.ok("the real client address and port, untouched: no NAT on the way")
	return nil
}

// showRedis runs redis-server on gamma, bound only to its virtual IP, and redis-cli on alpha.
func (d *demo) showRedis(ctx context.Context) error {
	if !d.redis {
		d.p.say("skipped: redis-server or redis-cli is not installed (apt-get install redis-server redis-tools)")
		return nil
	}
	d.p.command("gamma", "redis-server --bind "+ipGamma+" --port 6379 --save '' --appendonly no --protected-mode no")
	if _, err := d.topo.Start(d.gamma, "gamma-redis", "redis-server", "--bind", ipGamma, "--port", "6379",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no", "--dir", d.dir); err != nil {
		return err
	}
	cli := func(args ...string) (string, error) {
		out, err := d.alpha.Run(ctx, "redis-cli", append([]string{"-h", ipGamma}, args...)...)
		return strings.TrimSpace(out), err
	}
	err := poll(ctx, 10*time.Second, "redis on gamma to answer PING", func(context.Context) (bool, error) {
		out, err := cli("PING")
		return err == nil && out == "PONG", nil
	})
	if err != nil {
		return err
	}
	for _, c := range [][]string{{"SET", "demo", "hello"}, {"GET", "demo"}} {
		d.p.command("alpha", "redis-cli -h "+ipGamma+" "+strings.Join(c, " "))
		out, err := cli(c...)
		if err != nil {
			return err
		}
		d.p.block(out)
	}
	d.p.command("alpha", "redis-cli -h "+ipGamma+" CLIENT LIST")
	out, err := cli("CLIENT", "LIST")
	if err != nil {
		return err
	}
	line := pickFields(out, "addr", "laddr", "cmd")
	d.p.block(line)
	if !strings.Contains(line, "addr="+ipAlpha+":") {
		return fmt.Errorf("redis did not list a client from %s: %s", ipAlpha, out)
	}
	d.p.ok("redis sees alpha's own address (addr=), its own virtual IP (laddr=)")
	return nil
}

// showLAN reaches the LAN host behind gamma from alpha. The subnet feature is young, so a failure
// here skips the part instead of failing the demo.
func (d *demo) showLAN(ctx context.Context) error {
	d.p.say("gamma exposes its LAN with --subnet; 'lan' has no route back to the mesh.")
	if d.lanSkip == "" {
		if err := d.lanPart(ctx); err != nil {
			if ctx.Err() != nil {
				return err
			}
			d.lanSkip = err.Error()
		}
	}
	if d.lanSkip != "" {
		d.p.say("LAN part skipped: %s", d.lanSkip)
	}
	return nil
}

// lanPart pings the LAN host from alpha and asks a socat service on it who connected.
func (d *demo) lanPart(ctx context.Context) error {
	if err := d.a.waitRoute(ctx, lanPrefix, 10*time.Second); err != nil {
		return err
	}
	if err := d.waitPing(ctx, d.alpha, ipLANHost, 5*time.Second); err != nil {
		return err
	}
	d.p.command("alpha", "ping -c 2 "+ipLANHost)
	out, err := d.alpha.Run(ctx, "ping", "-c", "2", "-i", "0.3", ipLANHost)
	d.p.block(grepLines(out, "bytes from"))
	if err != nil {
		return fmt.Errorf("ping from alpha to the LAN host: %w", err)
	}
	d.p.command("lan", fmt.Sprintf("socat TCP-LISTEN:%d,bind=%s,fork %s", servicePort, ipLANHost, quoteSystem(peerAddrReply)))
	if _, err := d.topo.Start(d.lan, "lan-socat", "socat",
		fmt.Sprintf("TCP-LISTEN:%d,bind=%s,reuseaddr,fork", servicePort, ipLANHost), peerAddrReply); err != nil {
		return err
	}
	d.p.command("alpha", fmt.Sprintf("socat - TCP:%s:%d,sourceport=%d", ipLANHost, servicePort, lanClientPort))
	seen, err := d.askPeerAddr(ctx, d.alpha, ipLANHost, lanClientPort)
	if err != nil {
		return err
	}
	d.p.say("the LAN host saw the client as %s", seen)
	if !strings.HasPrefix(seen, ipLANGate+":") {
		return fmt.Errorf("the LAN host saw %s, want gamma's LAN address %s (SNAT)", seen, ipLANGate)
	}
	d.p.ok("gamma's LAN address: gamma masquerades mesh traffic into its LAN (--subnet-snat, the default)")
	return nil
}

// showTables prints alpha's peers and routes with the real CLI.
func (d *demo) showTables(ctx context.Context) error {
	d.p.say("gamma is a peer of alpha although they never talk directly: next hop beta.")
	for _, what := range []string{"peers", "routes"} {
		out, err := d.cli(ctx, d.a, what)
		if err != nil {
			return err
		}
		d.p.block(out)
	}
	return nil
}

// showRelay prints the relay's status with the real CLI.
func (d *demo) showRelay(ctx context.Context) error {
	d.p.say("beta holds sessions with alpha and gamma and forwards between them.")
	out, err := d.cli(ctx, d.b, "status")
	if err != nil {
		return err
	}
	d.p.block(out)
	return nil
}

// showProxy holds one TCP connection from alpha to gamma open and prints `weft proxy` on both ends:
// alpha runs --tcp-proxy kcp, so the steps above already went over KCP (through the relay beta), and the
// same flow shows the same real 4-tuple on the node that accepted it and on the node that re-originated it.
func (d *demo) showProxy(ctx context.Context) error {
	d.p.say("alpha runs --tcp-proxy kcp: its TCP flows to gamma cross the mesh as KCP streams, and gamma")
	d.p.say("re-originates each one FROM alpha's own address and port, so services see the real client.")
	target := ipGamma + ":7000"
	if d.redis {
		target = ipGamma + ":6379"
	}
	d.p.command("alpha", "(sleep 4) | socat - TCP:"+target+",sourceport=41234   # a connection held open")
	if _, err := d.topo.Start(d.alpha, "alpha-hold", "sh", "-c", "sleep 4 | socat - TCP:"+target+",sourceport=41234"); err != nil {
		return err
	}
	want := ipAlpha + ":41234"
	err := poll(ctx, 10*time.Second, "the held connection to show in weft proxy", func(ctx context.Context) (bool, error) {
		out, err := exec.CommandContext(ctx, d.opts.Binary, "proxy", "--json", "--control", d.a.sock).Output()
		return err == nil && strings.Contains(string(out), want), nil
	})
	if err != nil {
		return err
	}
	for _, n := range []*node{d.a, d.c} {
		out, err := d.cli(ctx, n, "proxy")
		if err != nil {
			return err
		}
		d.p.block(out)
		if !strings.Contains(out, want) {
			return fmt.Errorf("weft proxy on %s does not list the flow from %s", n.host.Name, want)
		}
	}
	d.p.ok("the same flow, the same real 4-tuple, on both nodes: source side on alpha, destination side on gamma")
	return nil
}

// cli runs `weft <what> --control SOCK` against node n, shows the command and returns its output.
func (d *demo) cli(ctx context.Context, n *node, what string) (string, error) {
	d.p.command(n.host.Name, fmt.Sprintf("weft %s --control %s", what, n.sock))
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.opts.Binary, what, "--control", n.sock).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("weft %s on %s: %w: %s", what, n.host.Name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// waitPing waits until one ping from h to dst is answered: a fresh route may need a moment.
func (d *demo) waitPing(ctx context.Context, h *Host, dst string, timeout time.Duration) error {
	return poll(ctx, timeout, "a ping reply from "+dst+" on "+h.Name, func(ctx context.Context) (bool, error) {
		_, err := h.Run(ctx, "ping", "-c", "1", "-W", "1", dst)
		return err == nil, nil
	})
}

// askPeerAddr connects from h with source port srcPort to a peerAddrReply service on addr and returns
// what the service saw, as "ip:port".
func (d *demo) askPeerAddr(ctx context.Context, h *Host, addr string, srcPort int) (string, error) {
	var seen string
	target := fmt.Sprintf("TCP:%s:%d,sourceport=%d,reuseaddr", addr, servicePort, srcPort)
	err := poll(ctx, 10*time.Second, "an answer from the service on "+addr, func(ctx context.Context) (bool, error) {
		out, err := h.Run(ctx, "socat", "-T3", "-u", target, "STDOUT")
		seen = strings.Replace(strings.TrimSpace(out), " ", ":", 1)
		return err == nil && seen != "", nil
	})
	return seen, err
}

// grepLines keeps the lines of text that contain any of the words.
func grepLines(text string, words ...string) string {
	var keep []string
	for _, line := range strings.Split(text, "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				keep = append(keep, line)
				break
			}
		}
	}
	return strings.Join(keep, "\n")
}

// pickFields keeps only the named key=value fields of each line of a Redis CLIENT LIST.
func pickFields(text string, keys ...string) string {
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		var kept []string
		for _, f := range strings.Fields(line) {
			for _, k := range keys {
				if strings.HasPrefix(f, k+"=") {
					kept = append(kept, f)
				}
			}
		}
		lines = append(lines, strings.Join(kept, " "))
	}
	return strings.Join(lines, "\n")
}

// quoteSystem shows a socat SYSTEM address as a user would type it in a shell.
func quoteSystem(addr string) string {
	cmd, _ := strings.CutPrefix(addr, "SYSTEM:")
	return "SYSTEM:'" + cmd + "'"
}

// showCert makes a network CA and a certificate for delta listing 10.144.144.4, shows it, and shows
// `weft up` refusing to run delta with another address. The mesh above runs in shared-secret mode;
// this step only shows the tools and the refusal.
func (d *demo) showCert(ctx context.Context) error {
	d.p.say("a network CA signs, for each node, the address and subnets it may use.")
	caDir, deltaDir := filepath.Join(d.dir, "ca"), filepath.Join(d.dir, "delta-cert")
	for _, args := range [][]string{
		{"cert", "ca", "--name", "demo-ca", "--out", caDir},
		{"cert", "sign", "--ca", caDir, "--hostname", "delta", "--ipv4", "10.144.144.4/24", "--out", deltaDir},
		{"cert", "print", filepath.Join(deltaDir, "node.crt")},
	} {
		d.p.command("host", "weft "+strings.Join(args, " "))
		out, err := exec.CommandContext(ctx, d.opts.Binary, args...).CombinedOutput()
		d.p.block(string(out))
		if err != nil {
			return fmt.Errorf("weft %s: %w", strings.Join(args[:2], " "), err)
		}
	}
	d.p.say("delta tries to run with 10.144.144.5, which its certificate does not list:")
	args := []string{"up", "--network-name", networkName, "--ca", filepath.Join(caDir, "ca.crt"),
		"--cert", filepath.Join(deltaDir, "node.crt"), "--cert-key", filepath.Join(deltaDir, "node.key"),
		"--ipv4", "10.144.144.5/24", "--dev", "weftdemo", "--control", filepath.Join(d.dir, "delta.sock"),
		"--state-dir", filepath.Join(d.dir, "delta-state")}
	d.p.command("delta", "weft up --ca ca.crt --cert node.crt --cert-key node.key --ipv4 10.144.144.5/24 ...")
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.opts.Binary, args...).CombinedOutput()
	d.p.block(string(out))
	if err == nil || !strings.Contains(string(out), "lists 10.144.144.4/24") {
		return fmt.Errorf("weft up with an address the certificate does not list: want a refusal naming 10.144.144.4/24, got %v", err)
	}
	d.p.ok("refused: a node uses only the address its certificate lists; peers check the same in every handshake and announcement")
	return nil
}
