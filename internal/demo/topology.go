package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// NetnsPrefix starts the name of every namespace the demo creates.
	NetnsPrefix = "weftdemo-"
	// netnsDir is where ip(8) keeps the bind mounts of named namespaces.
	netnsDir = "/run/netns"
	// cmdTimeout bounds every short command (ip, ping, socat client, redis-cli).
	cmdTimeout = 15 * time.Second
	// stopGrace is how long teardown waits after SIGTERM before SIGKILL.
	stopGrace = 5 * time.Second
)

// Host is one machine of the demo: a network namespace.
type Host struct {
	// Name is the short name shown to the user, e.g. "alpha".
	Name string
	// Netns is the name of the network namespace, e.g. "weftdemo-a".
	Netns string
}

// Command returns a command that runs program inside the host's namespace through `ip netns exec`
// (which execs the program, so signals reach it). The command gets its own process group, so a
// Ctrl-C on the terminal reaches only the demo, which then stops everything in order; and SIGKILL if
// the demo dies.
func (h *Host) Command(ctx context.Context, program string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Netns, program}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	return cmd
}

// Run runs program inside the namespace to completion (at most cmdTimeout) and returns its combined
// output. The error names the host and the command.
func (h *Host) Run(ctx context.Context, program string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	out, err := h.Command(ctx, program, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("on %s: %s %s: %w: %s", h.Name, program, strings.Join(args, " "),
			err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Topology owns the hosts and processes of one demo run and removes them all in Close.
type Topology struct {
	dir   string // where process logs go
	hosts []*Host
	procs []*Proc
}

// NewTopology returns an empty topology whose process logs go to dir.
func NewTopology(dir string) *Topology { return &Topology{dir: dir} }

// AddHost creates the namespace NetnsPrefix+suffix with its loopback up. A leftover namespace of that
// name with nothing running inside (from a demo that was killed) is removed first; one with processes
// inside belongs to a demo still running, and is an error.
func (t *Topology) AddHost(ctx context.Context, name, suffix string) (*Host, error) {
	h := &Host{Name: name, Netns: NetnsPrefix + suffix}
	if _, err := os.Stat(filepath.Join(netnsDir, h.Netns)); err == nil {
		pids, err := netnsPids(h.Netns)
		if err != nil {
			return nil, err
		}
		if len(pids) > 0 {
			return nil, fmt.Errorf("namespace %s is in use: is another 'weft demo' running? Stop it first (or: ip netns del %s)",
				h.Netns, h.Netns)
		}
		if err := run(ctx, "ip", "netns", "del", h.Netns); err != nil {
			return nil, fmt.Errorf("remove leftover namespace: %w", err)
		}
	}
	if err := run(ctx, "ip", "netns", "add", h.Netns); err != nil {
		return nil, fmt.Errorf("create host %s: %w", name, err)
	}
	t.hosts = append(t.hosts, h)
	if err := run(ctx, "ip", "-n", h.Netns, "link", "set", "lo", "up"); err != nil {
		return nil, fmt.Errorf("host %s: %w", name, err)
	}
	return h, nil
}

// Link joins a and b with a veth pair: interface ifA in a with address addrA (e.g. "192.0.2.1/24"),
// ifB in b with addrB, both up.
func (t *Topology) Link(ctx context.Context, a *Host, ifA, addrA string, b *Host, ifB, addrB string) error {
	cmds := [][]string{
		{"-n", a.Netns, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b.Netns},
		{"-n", a.Netns, "addr", "add", addrA, "dev", ifA},
		{"-n", b.Netns, "addr", "add", addrB, "dev", ifB},
		{"-n", a.Netns, "link", "set", ifA, "up"},
		{"-n", b.Netns, "link", "set", ifB, "up"},
	}
	for _, c := range cmds {
		if err := run(ctx, "ip", c...); err != nil {
			return fmt.Errorf("link %s-%s: %w", a.Name, b.Name, err)
		}
	}
	return nil
}

// Start runs a long-lived program in host h, its output going to the log file <dir>/<logName>.log.
// Close stops it.
func (t *Topology) Start(h *Host, logName, program string, args ...string) (*Proc, error) {
	desc := h.Name + ": " + program
	p, err := startProc(desc, h.Command(context.Background(), program, args...), filepath.Join(t.dir, logName+".log"))
	if err != nil {
		return nil, err
	}
	t.procs = append(t.procs, p)
	return p, nil
}

// Close stops every process (SIGTERM, then SIGKILL after a grace period), kills whatever else still
// runs inside the namespaces, and deletes them. It returns every error met, after trying everything.
func (t *Topology) Close() error {
	var errs []error
	// Stop them all at once, so the grace periods overlap.
	res := make(chan error, len(t.procs))
	for _, p := range t.procs {
		go func() { res <- p.Stop(stopGrace) }()
	}
	for range t.procs {
		errs = append(errs, <-res)
	}
	t.procs = nil
	for i := len(t.hosts) - 1; i >= 0; i-- {
		errs = append(errs, removeNetns(t.hosts[i].Netns))
	}
	t.hosts = nil
	return errors.Join(errs...)
}

// removeNetns SIGKILLs every process inside the namespace, then deletes it.
func removeNetns(netns string) error {
	pids, err := netnsPids(netns)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL) // gone already is fine
	}
	if err := run(context.Background(), "ip", "netns", "del", netns); err != nil {
		return fmt.Errorf("delete namespace: %w", err)
	}
	return nil
}

// netnsPids lists the processes running inside the namespace.
func netnsPids(netns string) ([]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", netns).Output()
	if err != nil {
		return nil, fmt.Errorf("list processes in namespace %s: %w", netns, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// run runs a command in the demo's own namespace (at most cmdTimeout); the error carries its output.
func run(ctx context.Context, program string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, program, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", program, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
