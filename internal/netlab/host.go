package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

// Host is one test machine: a network namespace made by Lab.Host.
type Host struct {
	name  string
	netns string
}

// Name returns the short name given to Lab.Host.
func (h *Host) Name() string { return h.name }

// Netns returns the name of the host's network namespace.
func (h *Host) Netns() string { return h.netns }

// Command returns a command that runs name with args inside the host's namespace, through
// `ip netns exec`. ip execs the program, so the command's process is the program itself: signals sent
// to it reach the program, and ctx ending kills the program.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.netns, name}, args...)...)
}

// RunErr runs a command inside the namespace to completion and returns its combined stdout and stderr.
// The error names the command and host.
func (h *Host) RunErr(ctx context.Context, name string, args ...string) (string, error) {
	out, err := combinedOutput(h.Command(ctx, name, args...))
	if err != nil {
		return out, fmt.Errorf("on host %s: %w", h.name, err)
	}
	return out, nil
}

// Run runs a command inside the namespace to completion (at most 60s) and returns its combined output.
// It fails the test, showing the output, if the command fails or times out.
func (h *Host) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := h.RunErr(ctx, name, args...)
	if err != nil {
		t.Fatalf("netlab: %v\n%s", err, out)
	}
	return out
}

// Sysctl sets a kernel parameter inside the namespace, e.g. Sysctl(t, "net.ipv4.ip_forward", "1").
// Network parameters are per namespace; others may be global, so set only net.* ones.
func (h *Host) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	h.Run(t, "sysctl", "-q", "-w", key+"="+value)
}

// AddRoute adds a route to dst through the gateway via inside the namespace.
func (h *Host) AddRoute(t testing.TB, dst netip.Prefix, via netip.Addr) {
	t.Helper()
	h.ip(t, "route", "add", dst.String(), "via", via.String())
}

// DisableOffloads turns off GRO, GSO and TSO on iface, so that each packet on the wire is one packet
// to the loss rule (needed for meaningful loss runs).
func (h *Host) DisableOffloads(t testing.TB, iface string) {
	t.Helper()
	h.Run(t, "ethtool", "-K", iface, "gro", "off", "gso", "off", "tso", "off")
}

// ip runs `ip -n NETNS args...` and fails the test on error.
func (h *Host) ip(t testing.TB, args ...string) {
	t.Helper()
	out, err := runCmd(context.Background(), "ip", append([]string{"-n", h.netns}, args...)...)
	if err != nil {
		t.Fatalf("netlab: on host %s: %v\n%s", h.name, err, strings.TrimSpace(out))
	}
}
