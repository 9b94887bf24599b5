package demo

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/weft-vpn/weft/internal/control"
)

const (
	// readyTimeout bounds the wait for a node's control socket to answer.
	readyTimeout = 15 * time.Second
	// routeTimeout bounds the wait for a route to reach alpha.
	routeTimeout = 20 * time.Second
	// pollEvery is the pause between two polls.
	pollEvery = 100 * time.Millisecond
)

// node is one `weft up` process of the demo.
type node struct {
	host *Host
	ip   string
	sock string // control socket
	proc *Proc
}

// startNode runs `weft up` in host h with virtual address ip/24 and the extra flags.
func (d *demo) startNode(h *Host, ip string, extra ...string) (*node, error) {
	n := &node{host: h, ip: ip, sock: filepath.Join(d.dir, h.Name+".sock")}
	args := []string{"up",
		"--network-name", networkName, "--network-secret", d.secret,
		"--ipv4", ip + "/24", "--hostname", h.Name,
		"--control", n.sock, "--state-dir", filepath.Join(d.dir, h.Name+"-state"),
	}
	p, err := d.topo.Start(h, h.Name, d.opts.Binary, append(args, extra...)...)
	if err != nil {
		return nil, err
	}
	n.proc = p
	return n, nil
}

// waitReady waits until the node's control socket answers `status`, which the node serves only once
// it is up.
func (n *node) waitReady(ctx context.Context) error {
	c := control.NewClient(n.sock)
	return poll(ctx, readyTimeout, "weft up on "+n.host.Name+" to answer 'weft status'", func(ctx context.Context) (bool, error) {
		if n.proc.Exited() {
			return false, fmt.Errorf("weft up on %s exited: %s", n.host.Name, n.proc.LogTail(3))
		}
		_, err := c.Status(ctx)
		return err == nil, nil
	})
}

// waitRoute waits until the node lists prefix (e.g. "10.144.144.3/32") in `weft routes`.
func (n *node) waitRoute(ctx context.Context, prefix string, timeout time.Duration) error {
	want, err := netip.ParsePrefix(prefix)
	if err != nil {
		return fmt.Errorf("route to wait for: %w", err)
	}
	c := control.NewClient(n.sock)
	what := fmt.Sprintf("a route to %s on %s", prefix, n.host.Name)
	return poll(ctx, timeout, what, func(ctx context.Context) (bool, error) {
		if n.proc.Exited() {
			return false, fmt.Errorf("weft up on %s exited: %s", n.host.Name, n.proc.LogTail(3))
		}
		routes, err := c.Routes(ctx)
		if err != nil {
			return false, nil
		}
		for _, r := range routes {
			if p, err := netip.ParsePrefix(r.Prefix); err == nil && p == want {
				return true, nil
			}
		}
		return false, nil
	})
}

// poll calls check every pollEvery until it reports done, fails, ctx ends or timeout passes.
func poll(ctx context.Context, timeout time.Duration, what string, check func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		done, err := check(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("waited %v for %s", timeout, what)
			}
			return ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}
