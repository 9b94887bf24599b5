package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeTB records what a helper reports instead of failing the real test: Fatalf ends the calling
// goroutine like the real one, Failed can be forced, and cleanups run when the test says so.
type fakeTB struct {
	testing.TB
	failed   bool
	fatals   []string
	logs     []string
	cleanups []func()
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
	f.failed = true
	runtime.Goexit() // as testing does; callers run the helper in their own goroutine

}
func (f *fakeTB) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Failed() bool      { return f.failed }
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	f.cleanups = nil
}

// inGoroutine runs fn in its own goroutine, so a fakeTB.Fatalf inside it ends only that goroutine.
func inGoroutine(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

// twoHosts returns a lab with hosts a (10.77.0.1/24 on "va") and b (10.77.0.2/24 on "vb") linked.
func twoHosts(t testing.TB) (*Lab, *Host, *Host) {
	t.Helper()
	l := New(t)
	a, b := l.Host("a"), l.Host("b")
	l.Link(a, "va", netip.MustParsePrefix("10.77.0.1/24"), b, "vb", netip.MustParsePrefix("10.77.0.2/24"))
	return l, a, b
}

func ping(h *Host, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.RunErr(ctx, "ping", "-c1", "-W1", addr)
	return err
}

// pingSummary returns the packets sent and received from the summary line of ping's output.
func pingSummary(t *testing.T, out string) (sent, received int) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if _, err := fmt.Sscanf(line, "%d packets transmitted, %d received", &sent, &received); err == nil {
			return sent, received
		}
	}
	t.Fatalf("no ping summary in:\n%s", out)
	return 0, 0
}

// leftovers returns the namespaces still present whose names start with prefix.
func leftovers(t *testing.T, prefix string) []string {
	t.Helper()
	all, err := Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for _, n := range all {
		if strings.HasPrefix(n, prefix) {
			mine = append(mine, n)
		}
	}
	return mine
}

func TestLinkPing(t *testing.T) {
	t.Parallel()
	_, a, b := twoHosts(t)
	if err := ping(a, "10.77.0.2"); err != nil {
		t.Fatalf("a cannot ping b: %v", err)
	}
	if err := ping(b, "10.77.0.1"); err != nil {
		t.Fatalf("b cannot ping a: %v", err)
	}
	if out := a.Run(t, "ip", "-o", "-4", "addr", "show", "dev", "va"); !strings.Contains(out, "10.77.0.1/24") {
		t.Fatalf("va has not got 10.77.0.1/24:\n%s", out)
	}
}

func TestRoutingThroughMiddleHost(t *testing.T) {
	t.Parallel()
	l := New(t)
	a, r, c := l.Host("a"), l.Host("r"), l.Host("c")
	l.Link(a, "ar", netip.MustParsePrefix("10.78.1.1/24"), r, "ra", netip.MustParsePrefix("10.78.1.2/24"))
	l.Link(r, "rc", netip.MustParsePrefix("10.78.2.1/24"), c, "cr", netip.MustParsePrefix("10.78.2.2/24"))
	if err := ping(a, "10.78.2.2"); err == nil {
		t.Fatal("a reached c without a route")
	}
	r.Sysctl(t, "net.ipv4.ip_forward", "1")
	a.AddRoute(t, netip.MustParsePrefix("10.78.2.0/24"), netip.MustParseAddr("10.78.1.2"))
	c.AddRoute(t, netip.MustParsePrefix("10.78.1.0/24"), netip.MustParseAddr("10.78.2.1"))
	if err := ping(a, "10.78.2.2"); err != nil {
		t.Fatalf("a cannot reach c through r: %v", err)
	}
}

func TestSetLoss(t *testing.T) {
	t.Parallel()
	_, a, b := twoHosts(t)
	b.DisableOffloads(t, "vb")
	if err := ping(a, "10.77.0.2"); err != nil {
		t.Fatalf("before loss: %v", err)
	}
	b.SetLoss(t, "vb", 500)
	// About half of 200 echo requests are dropped (25..75% allows > 7 standard deviations).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := a.RunErr(ctx, "ping", "-q", "-c200", "-i0.005", "-W1", "10.77.0.2")
	sent, received := pingSummary(t, out)
	if sent != 200 || received < 50 || received > 150 {
		t.Fatalf("with 50%% loss: %d of %d echoes answered, want 50..150", received, sent)
	}
	b.SetLoss(t, "vb", 1000) // replaces the rate
	if out := b.Run(t, "nft", "list", "table", "netdev", "weftlab_loss_vb"); !strings.Contains(out, "meta protocol ip drop") {
		t.Fatalf("loss rule not replaced:\n%s", out)
	}
	for i := 0; i < 3; i++ {
		if err := ping(a, "10.77.0.2"); err == nil {
			t.Fatal("ping got through 100% loss")
		}
	}
	b.SetLoss(t, "vb", 0)
	if err := ping(a, "10.77.0.2"); err != nil {
		t.Fatalf("after removing loss: %v", err)
	}
	if out := b.Run(t, "nft", "list", "tables"); strings.Contains(out, "weftlab_loss") {
		t.Fatalf("loss table left after SetLoss 0:\n%s", out)
	}
	b.SetLoss(t, "vb", 0) // removing twice is fine
}

func TestStartKill(t *testing.T) {
	t.Parallel()
	l := New(t)
	h := l.Host("h")
	p := h.Start(t, "sleep", "100")
	// ip netns exec execs sleep, so the pid we hold becomes the sleep itself.
	Eventually(t, 5*time.Second, func() bool {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.Pid()))
		return err == nil && strings.TrimSpace(string(comm)) == "sleep"
	}, "pid %d never became the sleep process", p.Pid())
	if out := h.Run(t, "ip", "netns", "identify", fmt.Sprint(p.Pid())); strings.TrimSpace(out) != h.Netns() {
		t.Fatalf("process is in namespace %q, want %q", out, h.Netns())
	}
	if _, err := p.Wait(100 * time.Millisecond); err == nil {
		t.Fatal("Wait returned for a sleeping process")
	}
	start := time.Now()
	p.Kill()
	code, err := p.Wait(time.Second)
	if err != nil || code != -1 {
		t.Fatalf("after Kill: code %d, err %v; want -1 (signal), nil", code, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Kill took %v", d)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("Signal after exit: %v, want ErrProcessDone", err)
	}
	p.Kill() // again: must not block or fail
}

func TestWaitExitCodeAndLog(t *testing.T) {
	t.Parallel()
	h := New(t).Host("h")
	p := h.Start(t, "sh", "-c", "echo hello out; echo hello err >&2; sleep 0.2; exit 3")
	p.WaitLog(t, "hello err", 5*time.Second)
	code, err := p.Wait(5 * time.Second)
	if err != nil || code != 3 {
		t.Fatalf("Wait = %d, %v; want 3, nil", code, err)
	}
	if log := p.Log(); !strings.Contains(log, "hello out") || !strings.Contains(log, "hello err") {
		t.Fatalf("log misses output:\n%s", log)
	}
}

func TestWaitLogFailsWhenProcessExits(t *testing.T) {
	t.Parallel()
	h := New(t).Host("h")
	p := h.Start(t, "sh", "-c", "echo something else; exit 2")
	fake := &fakeTB{TB: t}
	start := time.Now()
	inGoroutine(func() { p.WaitLog(fake, "never printed", 30*time.Second) })
	if len(fake.fatals) != 1 || !strings.Contains(fake.fatals[0], "exited (code 2)") ||
		!strings.Contains(fake.fatals[0], "something else") {
		t.Fatalf("WaitLog reported %q", fake.fatals)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("WaitLog took %v to notice the exit", d)
	}
}

// TestCleanup checks that a lab's cleanup stops processes (also one that ignores SIGTERM and one
// started with Command and never waited for) and removes the namespaces.
func TestCleanup(t *testing.T) {
	t.Parallel()
	var prefix string
	var stray *os.Process
	var stubborn *Proc
	t.Run("lab", func(t *testing.T) {
		l, a, _ := twoHosts(t)
		prefix = l.Prefix()
		stubborn = a.Start(t, "sh", "-c", `trap "" TERM; echo ready; exec sleep 100`)
		stubborn.WaitLog(t, "ready", 5*time.Second)
		cmd := a.Command(context.Background(), "sleep", "100")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		stray = cmd.Process
		if got := leftovers(t, prefix); len(got) != 2 {
			t.Fatalf("namespaces %v, want 2", got)
		}
	})
	if got := leftovers(t, prefix); len(got) != 0 {
		t.Fatalf("namespaces left after cleanup: %v", got)
	}
	if _, err := stubborn.Wait(0); err != nil {
		t.Fatalf("process ignoring SIGTERM survived cleanup: %v", err)
	}
	state, err := stray.Wait() // reaps it; returns only once it is dead
	if err != nil || state.Success() {
		t.Fatalf("stray process: %v, %v; want killed", state, err)
	}
}

// TestFailedTestShowsLogTail checks that cleanup of a failed test prints the last 60 log lines.
func TestFailedTestShowsLogTail(t *testing.T) {
	t.Parallel()
	fake := &fakeTB{TB: t, failed: true}
	l := New(fake)
	p := l.Host("h").Start(fake, "sh", "-c", `i=1; while [ $i -le 100 ]; do echo line$i; i=$((i+1)); done; sleep 100`)
	p.WaitLog(fake, "line100", 5*time.Second)
	fake.runCleanups()
	all := strings.Join(fake.logs, "\n") + "\n"
	if !strings.Contains(all, "line41\n") || !strings.Contains(all, "line100\n") || strings.Contains(all, "line40\n") {
		t.Fatalf("want lines 41..100 in the failure log, got:\n%s", all)
	}
	if got := leftovers(t, l.Prefix()); len(got) != 0 {
		t.Fatalf("namespaces left after cleanup: %v", got)
	}
}

func TestLinkRejectsLongInterfaceName(t *testing.T) {
	t.Parallel()
	fake := &fakeTB{TB: t}
	l := New(fake)
	defer fake.runCleanups()
	a, b := l.Host("a"), l.Host("b")
	inGoroutine(func() {
		l.Link(a, "interface-name-too-long", netip.MustParsePrefix("10.79.0.1/24"), b, "vb", netip.MustParsePrefix("10.79.0.2/24"))
	})
	if len(fake.fatals) != 1 || !strings.Contains(fake.fatals[0], "1 to 15 bytes") {
		t.Fatalf("Link reported %q", fake.fatals)
	}
}

func TestEventually(t *testing.T) {
	t.Parallel()
	calls := 0
	d := Eventually(t, 5*time.Second, func() bool { calls++; return calls == 3 }, "never true")
	if calls != 3 || d < 2*pollInterval {
		t.Fatalf("calls %d, elapsed %v", calls, d)
	}
	fake := &fakeTB{TB: t}
	inGoroutine(func() { Eventually(fake, 120*time.Millisecond, func() bool { return false }, "port %d", 80) })
	if len(fake.fatals) != 1 || !strings.Contains(fake.fatals[0], "port 80") {
		t.Fatalf("Eventually reported %q", fake.fatals)
	}
}
