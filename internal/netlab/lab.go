package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// NetnsPrefix starts the name of every namespace netlab creates.
	NetnsPrefix = "wl-"
	// netnsDir is where ip(8) keeps the bind mounts of named namespaces.
	netnsDir = "/run/netns"
	// maxIfName is the longest Linux interface name (IFNAMSIZ - 1).
	maxIfName = 15
	// cmdTimeout bounds every ip/nft/ethtool call made by the helpers.
	cmdTimeout = 60 * time.Second
)

// Lab owns the hosts of one test. Its namespace names carry a short random id, so tests (and test
// binaries) can build labs in parallel without clashing.
type Lab struct {
	t  testing.TB
	id string

	mu    sync.Mutex
	hosts map[string]*Host
}

// New returns an empty Lab for t. It calls RequireRoot and registers a cleanup that kills whatever
// still runs inside the Lab's namespaces and deletes them.
func New(t testing.TB) *Lab {
	t.Helper()
	RequireRoot(t)
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("netlab: random lab id: %v", err)
	}
	l := &Lab{t: t, id: hex.EncodeToString(b[:]), hosts: make(map[string]*Host)}
	t.Cleanup(l.cleanup)
	return l
}

// Prefix returns the prefix shared by all namespace names of this Lab ("wl-<id>-"), for checking with
// Leftovers that a finished Lab left nothing behind.
func (l *Lab) Prefix() string { return NetnsPrefix + l.id + "-" }

// Host creates a host: a new network namespace named "wl-<id>-<name>" with its loopback up. name must
// be unique within the Lab.
func (l *Lab) Host(name string) *Host {
	l.t.Helper()
	if name == "" || strings.ContainsAny(name, "/ \t\n") {
		l.t.Fatalf("netlab: bad host name %q (want non-empty, no slash or space)", name)
	}
	l.mu.Lock()
	_, dup := l.hosts[name]
	h := &Host{name: name, netns: l.Prefix() + name}
	if !dup {
		l.hosts[name] = h
	}
	l.mu.Unlock()
	if dup {
		l.t.Fatalf("netlab: host %q already exists in this lab", name)
	}
	if out, err := runCmd(context.Background(), "ip", "netns", "add", h.netns); err != nil {
		l.mu.Lock()
		delete(l.hosts, name)
		l.mu.Unlock()
		l.t.Fatalf("netlab: create host %s: %v\n%s", name, err, out)
	}
	h.ip(l.t, "link", "set", "lo", "up")
	return h
}

// Link joins hosts a and b with a veth pair created directly inside their namespaces: interface ifA
// in a with address addrA (e.g. 10.0.0.1/24) and ifB in b with addrB, both up. Interface names are
// chosen by the caller and must be at most 15 bytes. IPv6 addresses are added without duplicate
// address detection, so they are usable at once.
func (l *Lab) Link(a *Host, ifA string, addrA netip.Prefix, b *Host, ifB string, addrB netip.Prefix) {
	l.t.Helper()
	for _, n := range []string{ifA, ifB} {
		if n == "" || len(n) > maxIfName {
			l.t.Fatalf("netlab: interface name %q must be 1 to %d bytes", n, maxIfName)
		}
	}
	if !addrA.IsValid() || !addrB.IsValid() {
		l.t.Fatalf("netlab: link %s/%s: invalid address %v or %v", a.name, b.name, addrA, addrB)
	}
	a.ip(l.t, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b.netns)
	for _, end := range []struct {
		h    *Host
		ifc  string
		addr netip.Prefix
	}{{a, ifA, addrA}, {b, ifB, addrB}} {
		args := []string{"addr", "add", end.addr.String(), "dev", end.ifc}
		if end.addr.Addr().Is6() {
			args = append(args, "nodad")
		}
		end.h.ip(l.t, args...)
		end.h.ip(l.t, "link", "set", end.ifc, "up")
	}
}

// cleanup kills the processes left in the Lab's namespaces and deletes the namespaces.
func (l *Lab) cleanup() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, h := range l.hosts {
		if err := removeNetns(h.netns); err != nil {
			l.t.Errorf("netlab: cleanup of host %s: %v", name, err)
		}
		delete(l.hosts, name)
	}
}

// Leftovers lists the namespaces whose name starts with "wl-", i.e. those netlab made and did not
// (yet) remove.
func Leftovers() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), NetnsPrefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// SweepAll kills the processes inside every "wl-" namespace and deletes those namespaces. The TestMain
// of an end-to-end package calls it first, to clear the debris of a run that was killed. It removes
// the labs of other test binaries running at the same time too, so call it only where none run.
func SweepAll() error {
	names, err := Leftovers()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, removeNetns(n))
	}
	return errors.Join(errs...)
}

// removeNetns SIGKILLs every process inside the namespace, then deletes it.
func removeNetns(netns string) error {
	ctx := context.Background()
	out, err := runCmd(ctx, "ip", "netns", "pids", netns)
	if err != nil {
		return fmt.Errorf("list processes in %s: %w: %s", netns, err, out)
	}
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		// Gone already is fine; anything else shows up when the delete fails.
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if out, err := runCmd(ctx, "ip", "netns", "del", netns); err != nil {
		return fmt.Errorf("delete namespace %s: %w: %s", netns, err, out)
	}
	return nil
}

// runCmd runs a command with a timeout and returns its combined output.
func runCmd(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	return combinedOutput(exec.CommandContext(ctx, name, args...))
}

// combinedOutput runs cmd and returns its stdout and stderr. WaitDelay keeps a grandchild that holds
// the output pipe from blocking the caller past the context's end.
func combinedOutput(cmd *exec.Cmd) (string, error) {
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	return string(out), nil
}
