// Package lab builds the benchmark's throwaway networks: hosts are Linux network namespaces joined by
// veth pairs, with optional random loss from nftables and long-lived processes (weft, iperf3 servers,
// the delay wire) inside them.
//
// It is a small error-returning cousin of weft's internal/netlab, whose helpers are built around
// testing.TB. Every namespace is named "wbench-<id>-<host>"; Close stops the processes and deletes the
// namespaces (which removes their veths and nftables tables), and Sweep removes the debris of a run
// that was killed before it could clean up.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// NetnsPrefix starts the name of every namespace this package creates.
	NetnsPrefix = "wbench-"
	// cmdTimeout bounds every ip/nft/ethtool call.
	cmdTimeout = 30 * time.Second
	// stopGrace is how long Close waits after SIGTERM before SIGKILL.
	stopGrace = 5 * time.Second
)

// Lab owns the hosts and processes of one benchmark network.
type Lab struct {
	id     string
	logDir string

	mu    sync.Mutex
	hosts []*Host
	procs []*Proc
}

// Host is one namespace of a Lab.
type Host struct {
	lab   *Lab
	name  string
	netns string
}

// New returns an empty Lab whose process logs go to logDir.
func New(logDir string) (*Lab, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("random lab id: %w", err)
	}
	return &Lab{id: hex.EncodeToString(b[:]), logDir: logDir}, nil
}

// Host creates a namespace "wbench-<id>-<name>" with its loopback up.
func (l *Lab) Host(name string) (*Host, error) {
	h := &Host{lab: l, name: name, netns: NetnsPrefix + l.id + "-" + name}
	if out, err := run(context.Background(), "ip", "netns", "add", h.netns); err != nil {
		return nil, fmt.Errorf("create host %s: %w: %s", name, err, out)
	}
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	if err := h.IP("link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return h, nil
}

// Link joins a and b with a veth pair: ifA in a, ifB in b, both up. An address ("192.0.2.1/24") is
// added to each end that has one; "" leaves the end without an address.
func (l *Lab) Link(a *Host, ifA, addrA string, b *Host, ifB, addrB string) error {
	if err := a.IP("link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b.netns); err != nil {
		return err
	}
	for _, end := range []struct {
		h        *Host
		ifc, adr string
	}{{a, ifA, addrA}, {b, ifB, addrB}} {
		if end.adr != "" {
			if err := end.h.IP("addr", "add", end.adr, "dev", end.ifc); err != nil {
				return err
			}
		}
		if err := end.h.IP("link", "set", end.ifc, "up"); err != nil {
			return err
		}
	}
	return nil
}

// Close stops every process (SIGTERM, then SIGKILL after 5s), kills whatever else still runs in the
// namespaces and deletes them. It is safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	procs, hosts := l.procs, l.hosts
	l.procs, l.hosts = nil, nil
	l.mu.Unlock()
	for _, p := range procs {
		p.Stop()
	}
	var errs []error
	for _, h := range hosts {
		errs = append(errs, removeNetns(h.netns))
	}
	return errors.Join(errs...)
}

// Name returns the host's short name.
func (h *Host) Name() string { return h.name }

// Command returns a command running name inside the host's namespace. `ip netns exec` execs the
// program, so the process is the program itself.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.netns, name}, args...)...)
	cmd.WaitDelay = time.Second
	return cmd
}

// Run runs a command inside the namespace to completion and returns its combined output; the error
// names the host and command.
func (h *Host) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("on %s: %s %s: %w: %s", h.name, name, strings.Join(args, " "), err,
			strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// IP runs `ip -n NETNS args...`.
func (h *Host) IP(args ...string) error {
	out, err := run(context.Background(), "ip", append([]string{"-n", h.netns}, args...)...)
	if err != nil {
		return fmt.Errorf("on %s: ip %s: %w: %s", h.name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Sysctl sets a (per-namespace) net.* kernel parameter.
func (h *Host) Sysctl(key, value string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	_, err := h.Run(ctx, "sysctl", "-q", "-w", key+"="+value)
	return err
}

// DisableOffloads turns off GRO, GSO and TSO on iface (and TX checksum offload when txCsum is set, which
// a userspace forwarder needs: it would otherwise copy frames whose checksum was never filled in).
func (h *Host) DisableOffloads(iface string, txCsum bool) error {
	args := []string{"-K", iface, "gro", "off", "gso", "off", "tso", "off"}
	if txCsum {
		args = append(args, "tx", "off")
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	_, err := h.Run(ctx, "ethtool", args...)
	return err
}

// SetLoss drops permille (0..1000) of the IPv4 packets arriving on iface, at random, with an nftables
// netdev ingress rule `meta protocol ip numgen random mod 1000 < N drop` (the same rule as netlab's);
// 0 removes it.
func (h *Host) SetLoss(iface string, permille int) error {
	if permille < 0 || permille >= 1000 {
		return fmt.Errorf("loss on %s/%s: %d‰ out of range 0..999", h.name, iface, permille)
	}
	table := "wbench_loss_" + strings.ReplaceAll(iface, "-", "_")
	script := fmt.Sprintf("add table netdev %s\ndelete table netdev %s\n", table, table)
	if permille > 0 {
		script += fmt.Sprintf("table netdev %s {\n\tchain ingress {\n\t\ttype filter hook ingress device \"%s\" priority -500; policy accept;\n"+
			"\t\tmeta protocol ip numgen random mod 1000 < %d drop\n\t}\n}\n", table, iface, permille)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := h.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("set loss %d‰ on %s/%s: %w: %s", permille, h.name, iface, err, out)
	}
	return nil
}

// Sweep deletes every "wbench-" namespace left by an earlier run that was killed, with its processes.
func Sweep() error {
	entries, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list network namespaces: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), NetnsPrefix) {
			errs = append(errs, removeNetns(e.Name()))
		}
	}
	return errors.Join(errs...)
}

// removeNetns SIGKILLs every process inside the namespace, then deletes it.
func removeNetns(netns string) error {
	out, err := run(context.Background(), "ip", "netns", "pids", netns)
	if err != nil {
		return fmt.Errorf("list processes in %s: %w: %s", netns, err, out)
	}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL) // gone already is fine
		}
	}
	if out, err := run(context.Background(), "ip", "netns", "del", netns); err != nil {
		return fmt.Errorf("delete namespace %s: %w: %s", netns, err, out)
	}
	return nil
}

// run runs a command on the host with a timeout and returns its combined output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// logPath returns a fresh log file path for a process of host h.
func (h *Host) logPath(name string) string {
	h.lab.mu.Lock()
	n := len(h.lab.procs)
	h.lab.mu.Unlock()
	return filepath.Join(h.lab.logDir, fmt.Sprintf("%s-%s-%d.log", h.name, filepath.Base(name), n))
}
