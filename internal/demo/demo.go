package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// networkName is the mesh name every demo node gets.
const networkName = "demo"

// The demo's addresses.
const (
	ipAlpha   = "10.144.144.1"
	ipBeta    = "10.144.144.2"
	ipGamma   = "10.144.144.3"
	lanPrefix = "192.168.50.0/24"
	ipLANHost = "192.168.50.10"
	ipLANGate = "192.168.50.1"
)

// Options configure Run.
type Options struct {
	// Binary is the weft binary that runs the nodes and the CLI tables, usually os.Executable().
	// Required.
	Binary string
	// Out receives the story. Required.
	Out io.Writer
	// Color adds ANSI colors; set it only when Out is a terminal.
	Color bool
	// Keep leaves the network up after the checks until ctx ends, and prints commands to try.
	Keep bool
}

// demo is one run: the network, the nodes and what went wrong so far.
type demo struct {
	opts   Options
	p      *printer
	dir    string // temp dir: logs, control sockets, node state
	secret string
	redis  bool // redis-server and redis-cli are installed
	topo   *Topology

	alpha, beta, gamma, lan *Host
	a, b, c                 *node

	lanSkip     string   // why the LAN part is skipped ("" if it is not)
	failed      []string // titles of the failed steps
	checked     bool     // every check ran to its end
	interrupted bool     // ctx ended before the checks did, none having failed
}

// Run builds the demo network, shows weft working, and removes everything it made before it returns,
// also when a step fails or ctx ends (Ctrl-C). It returns nil only if every check passed; otherwise
// the error names the failed steps.
func Run(ctx context.Context, o Options) (err error) {
	if o.Binary == "" || o.Out == nil {
		return errors.New("demo: Options.Binary and Options.Out are required")
	}
	redis, err := checkPrereqs()
	if err != nil {
		return err
	}
	secret, err := randomSecret()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "weft-demo-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	d := &demo{opts: o, p: &printer{w: o.Out, color: o.Color}, dir: dir, secret: secret, redis: redis, topo: NewTopology(dir)}
	defer func() {
		if ctx.Err() != nil && !d.checked && len(d.failed) == 0 {
			d.interrupted = true
			err = errors.New("interrupted before every check ran")
		}
		err = d.teardown(err)
	}()

	start := time.Now()
	if err := d.setup(ctx); err != nil {
		return err
	}
	d.p.ok("alpha, beta and gamma are up, and alpha has a route to gamma (%.1fs)", time.Since(start).Seconds())
	d.showAll(ctx)
	d.checked = ctx.Err() == nil
	if d.checked && o.Keep {
		d.keep(ctx)
	}
	if len(d.failed) > 0 {
		return fmt.Errorf("demo failed at: %s", strings.Join(d.failed, "; "))
	}
	return nil
}

// teardown stops everything and says how the run ended; it returns the run's final error.
func (d *demo) teardown(runErr error) error {
	d.p.heading("Cleaning up")
	if err := d.topo.Close(); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("cleanup: %w", err))
	}
	if runErr == nil || d.interrupted || !hasLogs(d.dir) {
		_ = os.RemoveAll(d.dir)
		d.p.say("stopped the nodes and removed the namespaces")
		if runErr == nil {
			d.p.line("\nAll checks passed: that is weft. Run it for real with 'weft up --help'.")
		}
		return runErr
	}
	d.p.say("stopped the nodes and removed the namespaces; logs of the nodes are in %s", d.dir)
	return runErr
}

// hasLogs reports whether dir holds a process log worth showing.
func hasLogs(dir string) bool {
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	return err == nil && len(logs) > 0
}

// setup builds the network and starts the three nodes. Any error here ends the demo.
func (d *demo) setup(ctx context.Context) error {
	d.p.line("weft demo: a mesh VPN of three nodes, each in its own network namespace on this machine.")
	d.p.line("")
	d.p.line("   alpha 10.144.144.1  underlay 192.0.2.1")
	d.p.line("   beta  10.144.144.2  underlay 192.0.2.2 and 198.51.100.2 (the relay)")
	d.p.line("   gamma 10.144.144.3  underlay 198.51.100.3; LAN 192.168.50.0/24 with host 'lan' 192.168.50.10")
	d.p.line("")
	d.p.line("alpha and gamma share no network: only beta can reach both.")
	d.p.heading("Starting the mesh")
	if err := d.buildNetwork(ctx); err != nil {
		return fmt.Errorf("step %q: %w", "build the network", err)
	}
	if err := d.startNodes(ctx); err != nil {
		return fmt.Errorf("step %q: %w", "start the nodes", err)
	}
	return nil
}

// buildNetwork creates the four hosts and their links.
func (d *demo) buildNetwork(ctx context.Context) error {
	var err error
	for _, h := range []struct {
		dst          **Host
		name, suffix string
	}{{&d.alpha, "alpha", "a"}, {&d.beta, "beta", "b"}, {&d.gamma, "gamma", "c"}, {&d.lan, "lan", "l"}} {
		if *h.dst, err = d.topo.AddHost(ctx, h.name, h.suffix); err != nil {
			return err
		}
	}
	links := []struct {
		a, b       *Host
		ifA, ifB   string
		addA, addB string
	}{
		{d.alpha, d.beta, "eth0", "eth0", "192.0.2.1/24", "192.0.2.2/24"},
		{d.beta, d.gamma, "eth1", "eth0", "198.51.100.2/24", "198.51.100.3/24"},
		{d.gamma, d.lan, "lan0", "eth0", "192.168.50.1/24", "192.168.50.10/24"},
	}
	for _, l := range links {
		if err := d.topo.Link(ctx, l.a, l.ifA, l.addA, l.b, l.ifB, l.addB); err != nil {
			return err
		}
	}
	return nil // gamma's node turns on ip_forward itself for --subnet
}

// startNodes starts beta, alpha and gamma and waits until alpha has a route to gamma. If gamma does
// not start with --subnet, it is started without, and the LAN part is skipped.
func (d *demo) startNodes(ctx context.Context) error {
	var err error
	if d.b, err = d.startNode(d.beta, ipBeta); err != nil {
		return err
	}
	if d.a, err = d.startNode(d.alpha, ipAlpha, "--peer", "udp://192.0.2.2:11010", "--tcp-proxy", "kcp"); err != nil {
		return err
	}
	gammaPeer := []string{"--peer", "udp://198.51.100.2:11010"}
	if d.c, err = d.startNode(d.gamma, ipGamma, append(gammaPeer, "--subnet", lanPrefix)...); err != nil {
		return err
	}
	for _, n := range []*node{d.b, d.a} {
		if err := n.waitReady(ctx); err != nil {
			return err
		}
	}
	if err := d.c.waitReady(ctx); err != nil {
		if ctx.Err() != nil || !d.c.proc.Exited() {
			return err
		}
		d.lanSkip = fmt.Sprintf("gamma did not start with --subnet (%v)", err)
		if d.c, err = d.startNode(d.gamma, ipGamma, gammaPeer...); err != nil {
			return err
		}
		if err := d.c.waitReady(ctx); err != nil {
			return err
		}
	}
	d.p.command("beta", "weft up --ipv4 10.144.144.2/24 --hostname beta ...")
	d.p.command("alpha", "weft up --ipv4 10.144.144.1/24 --hostname alpha --peer udp://192.0.2.2:11010 --tcp-proxy kcp ...")
	subnet := " --subnet 192.168.50.0/24"
	if d.lanSkip != "" {
		subnet = ""
	}
	d.p.command("gamma", "weft up --ipv4 10.144.144.3/24 --hostname gamma --peer udp://198.51.100.2:11010"+subnet+" ...")
	return d.a.waitRoute(ctx, ipGamma+"/32", routeTimeout)
}

// check runs one shown step: a heading, then fn; a failure is printed and remembered.
func (d *demo) check(ctx context.Context, title string, fn func(context.Context) error) {
	if ctx.Err() != nil {
		return
	}
	d.p.heading(title)
	if err := fn(ctx); err != nil {
		if ctx.Err() != nil {
			return
		}
		d.p.fail("%v", err)
		d.failed = append(d.failed, fmt.Sprintf("%q: %v", title, err))
	}
}

// randomSecret returns a fresh network secret for one run.
func randomSecret() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random network secret: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
