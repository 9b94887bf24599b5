package e2e

// The acceptance tests of the proxy transport (one KCP conversation per flow): no flow stalls because
// another one is not read, a stalled flow costs the others nothing, flows share a lossy link fairly, and
// a thousand concurrent flows come and go without leaving anything behind. Each proves its traffic went
// through the proxy with the counters of `weft status` (flows opened on beta, bytes received over KCP on
// alpha), as the tests of proxy_test.go do.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/control"
	"github.com/weft-vpn/weft/internal/netlab"
)

// probeErr runs a tcpprobe client on h and returns its output and error, without failing the test.
func probeErr(h *netlab.Host, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := h.RunErr(ctx, probeBin, args...)
	return strings.TrimSpace(out), err
}

// waitFor calls cond every 50 ms until it holds, for at most timeout, and returns the time it took; on
// timeout it fails the test with msg(), evaluated then (so it shows the last state, not the first).
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, msg func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) >= timeout {
			t.Fatalf("after %v: %s", timeout, msg())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// watchedProbe runs a tcpprobe client on h as a process. If it still runs after snapshotAt, snap() is
// taken (while its flows are still open) and it gets until timeout before it is killed. It returns the
// client's output, whether it exited with code 0, and the snapshot if one was taken.
func watchedProbe(t *testing.T, h *netlab.Host, snapshotAt, timeout time.Duration, snap func() string, args ...string) (out string, ok bool, snapshot string) {
	t.Helper()
	p := h.Start(t, probeBin, args...)
	code, err := p.Wait(snapshotAt)
	if err != nil {
		snapshot = snap()
		if code, err = p.Wait(timeout - snapshotAt); err != nil {
			p.Kill()
			return strings.TrimSpace(p.Log()) + fmt.Sprintf("\n(killed: still running after %v)", timeout), false, snapshot
		}
	}
	return strings.TrimSpace(p.Log()), code == 0, snapshot
}

// setLossBoth drops permille of the packets arriving on eth0 of each host (offloads off, so that each
// packet on the wire is one packet to the rule); 0 removes the loss.
func setLossBoth(t *testing.T, permille int, hosts ...*netlab.Host) {
	t.Helper()
	for _, h := range hosts {
		if permille > 0 {
			h.DisableOffloads(t, "eth0")
		}
		h.SetLoss(t, "eth0", permille)
	}
}

// describeFlows summarizes what `weft proxy` on n lists, for a failure message: the number of flows and
// the first few with their state and bytes.
func describeFlows(n *weftNode) string {
	var fs []control.ProxyFlow
	if err := n.cli(&fs, "proxy"); err != nil {
		return fmt.Sprintf("%s: weft proxy: %v", n.name, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s lists %d proxied flows", n.name, len(fs))
	for i, f := range fs {
		if i == 8 {
			b.WriteString("\n  ...")
			break
		}
		fmt.Fprintf(&b, "\n  %s -> %s %s %s, %d bytes up, %d down, %.0f s old", f.Src, f.Dst, f.Side, f.State, f.BytesUp, f.BytesDown, f.AgeS)
	}
	return b.String()
}

// proxyCounters are the proxy counters of both nodes at one moment.
type proxyCounters struct{ a, b control.ProxyStatus }

func countersOf(a, b *weftNode) proxyCounters {
	return proxyCounters{a.status().Proxy, b.status().Proxy}
}

// checkProxied fails the test unless beta opened at least flows proxied flows and alpha received at
// least bytes over KCP since before: the traffic went through the proxy, not the plain tunnel.
func checkProxied(t *testing.T, a, b *weftNode, before proxyCounters, flows int, bytes int64) {
	t.Helper()
	now := countersOf(a, b)
	if got := now.b.FlowsOpened - before.b.FlowsOpened; got < uint64(flows) {
		t.Errorf("beta opened %d proxied flows, want at least %d: not every flow went through the proxy", got, flows)
	}
	if got := now.a.KCPBytesRx - before.a.KCPBytesRx; got < uint64(bytes) {
		t.Errorf("alpha received %d bytes over KCP, want at least %d: the data did not all go through the proxy", got, bytes)
	}
}

// burnCPU starts n busy loops (a shell `while :; do :; done` each, another process than the nodes) in
// host h, so that weft shares the cores. The returned stop kills them and reports the CPU time they got;
// the netlab cleanup kills them too if the test ends first.
func burnCPU(t *testing.T, h *netlab.Host, n int) (stop func() string) {
	t.Helper()
	var procs []*netlab.Proc
	for range n {
		procs = append(procs, h.Start(t, "sh", "-c", "while :; do :; done"))
	}
	start := time.Now()
	return func() string {
		var cpu time.Duration
		for _, p := range procs {
			cpu += cpuTime(p.Pid())
			p.Kill()
		}
		return fmt.Sprintf("%d busy loops got %v of CPU in %v", n, cpu.Round(time.Second), time.Since(start).Round(time.Second))
	}
}

// cpuTime returns the user plus system time of a running process, from /proc/PID/stat.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // after "pid (comm) "
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

const (
	noStallRuns       = 20               // runs of the whole exercise; 20 in CI
	noStallFlows      = 24               // concurrent uploads per run
	noStallBytes      = 2 << 20          // bytes per upload
	noStallLoss       = 30               // per mille, each way
	noStallRunTimeout = 60 * time.Second // for one run: all flows delivered and answered
	noStallMaxFailed  = 2                // failed runs after which the test stops
)

// TestProxyNoStall: 24 concurrent uploads of 2 MB to a server that accepts them all at once but reads
// them one at a time (to EOF, checking the sha256 the client sent first, answering "ok"), at 3% loss each
// way, while two busy loops keep both cores busy; 20 runs. A flow the server does not read yet must not
// hold up the one it reads: with one shared window they deadlock.
func TestProxyNoStall(t *testing.T) {
	a, b, ha, hb := proxyPair(t)
	setLossBoth(t, noStallLoss, ha, hb)
	stopBurn := burnCPU(t, ha, 2)
	var times []time.Duration
	failed := 0
	for run := 1; run <= noStallRuns; run++ {
		addr := fmt.Sprintf("10.144.144.1:%d", 7600+run)
		server := startProbe(t, ha, "serial-server", addr)
		before := countersOf(a, b)
		start := time.Now()
		// The client gives up by itself after noStallRunTimeout; just before, what the proxy lists is kept.
		out, ok, snapshot := watchedProbe(t, hb, noStallRunTimeout-3*time.Second, noStallRunTimeout+15*time.Second,
			func() string {
				return "flows listed 3 s before the client gave up:\n" + describeFlows(b) + "\n" + describeFlows(a)
			},
			"upload", addr, strconv.Itoa(noStallFlows), strconv.Itoa(noStallBytes), strconv.Itoa(int(noStallRunTimeout/time.Second)))
		took := time.Since(start)
		if !ok || !strings.HasPrefix(out, fmt.Sprintf("ok %d flows", noStallFlows)) {
			failed++
			served := strings.Count(server.Log(), ": ok,")
			t.Errorf("run %d/%d: after %v only %d of %d uploads were read, checked and answered (%d%% loss each way, "+
				"cores busy); the client says how the others failed (stalled: a flow the server did not read yet held "+
				"up the one it read):\n%s\nserver:\n%s\n%s",
				run, noStallRuns, took.Round(time.Millisecond), served, noStallFlows, noStallLoss/10, out, lastLines(server.Log(), 30),
				snapshot)
			if failed >= noStallMaxFailed {
				server.Kill()
				t.Fatalf("stopping after %d failed runs of %d (%d passed)", failed, run, run-failed)
			}
		} else {
			checkProxied(t, a, b, before, noStallFlows, noStallFlows*(noStallBytes+32))
			times = append(times, took)
			t.Logf("run %d/%d: %d x %d bytes delivered intact, read one at a time, in %v", run, noStallRuns,
				noStallFlows, noStallBytes, took.Round(time.Millisecond))
		}
		server.Kill()
	}
	t.Log(stopBurn())
	if len(times) > 0 {
		slices.Sort(times)
		t.Logf("%d runs passed: fastest %v, median %v, slowest %v", len(times), times[0].Round(time.Millisecond),
			times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
	}
}

// rateResult is the output of `tcpprobe rate`.
type rateResult struct {
	cc    string    // congestion control of the client sockets
	flows []float64 // Mbit/s per flow, over the window all flows were running
	total float64
	out   string
}

// measureRate runs `tcpprobe rate` from hb to addr and checks, with the counters, that it was proxied.
func measureRate(t *testing.T, a, b *weftNode, hb *netlab.Host, addr string, flows int, size int64, limit time.Duration) rateResult {
	t.Helper()
	before := countersOf(a, b)
	out, err := probeErr(hb, limit+60*time.Second, "rate", addr, strconv.Itoa(flows), strconv.FormatInt(size, 10),
		strconv.Itoa(int(limit/time.Second)))
	if err != nil || !strings.HasSuffix(out, "\nok") {
		t.Fatalf("tcpprobe rate %s %d flows: %v\n%s", addr, flows, err, out)
	}
	r := rateResult{out: out}
	var confirmed int64
	for _, line := range strings.Split(out, "\n") {
		var i int
		var mbit float64
		var n int64
		switch {
		case strings.HasPrefix(line, "congestion control: "):
			r.cc = strings.TrimPrefix(line, "congestion control: ")
		case strings.HasPrefix(line, "flow "):
			if _, err := fmt.Sscanf(line, "flow %d: %f Mbit/s (%d bytes", &i, &mbit, &n); err != nil {
				t.Fatalf("tcpprobe rate: bad line %q: %v", line, err)
			}
			r.flows = append(r.flows, mbit)
			confirmed += n
		case strings.HasPrefix(line, "total: "):
			fmt.Sscanf(line, "total: %f", &r.total)
		}
	}
	if len(r.flows) != flows {
		t.Fatalf("tcpprobe rate reported %d flows, want %d:\n%s", len(r.flows), flows, out)
	}
	if r.cc != "cubic" {
		t.Fatalf("client sockets use congestion control %q, want cubic:\n%s", r.cc, out)
	}
	checkProxied(t, a, b, before, flows, confirmed)
	return r
}

// median returns the median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// flowBytesUp returns the bytes_up of the flow from src as `weft proxy` on n lists it.
func flowBytesUp(n *weftNode, src string) (uint64, bool) {
	for _, f := range n.proxyFlows() {
		if f.Src == src {
			return f.BytesUp, true
		}
	}
	return 0, false
}

// flowListed reports whether `weft proxy` on n lists a flow from src.
func flowListed(n *weftNode, src string) bool {
	_, ok := flowBytesUp(n, src)
	return ok
}

const (
	independenceBytes  = 64 << 20 // flow Y's upload
	independenceRounds = 5        // rounds of (Y alone, then Y with a fresh X stalled)
	fairLoss           = 50       // per mille, each way
	fairFlows          = 8
	fairSeconds        = 8 * time.Second
)

// stallFlow starts flow X from src port port on hb to the stall server at addr and waits until it is
// stalled: listed on both nodes, with bytes moved and neither node moving any more of them. It returns
// the client process and X's bytes up on alpha (a) and beta (b) at that moment.
func stallFlow(t *testing.T, a, b *weftNode, hb *netlab.Host, addr string, port int) (*netlab.Proc, uint64, uint64) {
	t.Helper()
	src := fmt.Sprintf("10.144.144.2:%d", port)
	x := hb.Start(t, probeBin, "push", addr, strconv.Itoa(port))
	x.WaitLog(t, "connected", 15*time.Second)
	waitFlowOnBoth(t, b, a, src, addr)
	var upA, upB uint64
	waitFor(t, 30*time.Second, func() bool {
		a1, okA := flowBytesUp(a, src)
		b1, okB := flowBytesUp(b, src)
		time.Sleep(time.Second)
		upA, _ = flowBytesUp(a, src)
		upB, _ = flowBytesUp(b, src)
		return okA && okB && a1 > 0 && a1 == upA && b1 == upB
	}, func() string {
		return fmt.Sprintf("flow X never stalled: bytes up on alpha %d, on beta %d, still moving", upA, upB)
	})
	return x, upA, upB
}

// TestProxyIndependence: a flow whose server never reads (X, stalled with full buffers) costs another
// flow between the same nodes (Y) nothing: Y's rate with X stalled is at least 80% of Y's rate alone.
// And at 5% loss each way, 8 concurrent flows each get at least half their fair share of what one flow
// gets alone. The client sockets use cubic, whatever the machine's default.
func TestProxyIndependence(t *testing.T) {
	a, b, ha, hb := proxyPair(t)
	const sinkAddr, stallAddr = "10.144.144.1:7700", "10.144.144.1:7701"
	startProbe(t, ha, "sink-server", sinkAddr)
	startProbe(t, ha, "stall-server", stallAddr)

	t.Run("stalled flow costs another nothing", func(t *testing.T) {
		// Y alone and Y with X stalled alternate, one of each per round with a fresh X, and the medians
		// are compared: a drift of the machine's speed during the test (2 shared cores) hits both
		// sides alike instead of passing for an effect of X.
		var alone, withX []float64
		for r := range independenceRounds {
			alone = append(alone, measureRate(t, a, b, hb, sinkAddr, 1, independenceBytes, time.Minute).total)

			port := 41701 + r
			xSrc := fmt.Sprintf("10.144.144.2:%d", port)
			x, upA, upB := stallFlow(t, a, b, hb, stallAddr, port)
			withX = append(withX, measureRate(t, a, b, hb, sinkAddr, 1, independenceBytes, time.Minute).total)
			nowA, okA := flowBytesUp(a, xSrc)
			nowB, okB := flowBytesUp(b, xSrc)
			if _, err := x.Wait(0); err == nil {
				t.Fatalf("round %d: X's client exited while Y ran, so X was not stalled throughout:\n%s", r, x.Log())
			}
			if !okA || !okB || nowA > upA+64<<10 || nowB > upB+64<<10 {
				t.Fatalf("round %d: X did not stay stalled while Y ran (listed on alpha %v, beta %v; bytes up alpha %d -> %d, beta %d -> %d)",
					r, okA, okB, upA, nowA, upB, nowB)
			}
			t.Logf("round %d: Y alone %.0f Mbit/s; X stalled (%d bytes taken from the client by beta, %d delivered by alpha); Y with X %.0f Mbit/s",
				r, alone[r], upB, upA, withX[r])
			x.Kill()
			// The next round's Y alone starts once X is gone from both nodes.
			waitFor(t, 15*time.Second, func() bool {
				return !flowListed(a, xSrc) && !flowListed(b, xSrc)
			}, func() string {
				return fmt.Sprintf("round %d: X (%s) still listed after its client was killed", r, xSrc)
			})
		}
		ma, mw := median(alone), median(withX)
		ratio := mw / ma
		t.Logf("Y (64 MiB uploads, client congestion control cubic): median %.0f Mbit/s (%.1f MB/s) alone %.0f, "+
			"%.0f Mbit/s (%.1f MB/s) with X stalled %.0f: %.0f%%", ma, ma/8, alone, mw, mw/8, withX, 100*ratio)
		if ratio < 0.8 {
			t.Errorf("Y ran at %.0f Mbit/s with X stalled, %.0f%% of its %.0f Mbit/s alone, want at least 80%%: "+
				"a stalled flow slows the others", mw, 100*ratio, ma)
		}
	})

	t.Run(fmt.Sprintf("%d flows share %d%% loss fairly", fairFlows, fairLoss/10), func(t *testing.T) {
		setLossBoth(t, fairLoss, ha, hb)
		defer setLossBoth(t, 0, ha, hb)
		single := measureRate(t, a, b, hb, sinkAddr, 1, 1<<40, fairSeconds).total
		t.Logf("one flow alone at %d%% loss each way: %.1f Mbit/s over %v (cubic)", fairLoss/10, single, fairSeconds)
		if single <= 0 {
			t.Fatalf("one flow alone moved nothing in %v at %d%% loss", fairSeconds, fairLoss/10)
		}
		r := measureRate(t, a, b, hb, sinkAddr, fairFlows, 1<<40, fairSeconds)
		want := single / fairFlows / 2
		t.Logf("%d concurrent flows: %.1f Mbit/s together, each %.1f Mbit/s (want each >= %.1f = half of %.1f/%d)",
			fairFlows, r.total, r.flows, want, single, fairFlows)
		for i, f := range r.flows {
			if f < want {
				t.Errorf("flow %d of %d ran at %.1f Mbit/s, under half its fair share %.1f (one flow alone: %.1f Mbit/s)",
					i, fairFlows, f, want, single)
			}
		}
	})
}

// procLevel is a weft process's goroutines (from the pprof endpoint of its control socket) and open files.
type procLevel struct{ goroutines, fds int }

func levelOf(t *testing.T, n *weftNode) procLevel {
	t.Helper()
	out, err := hostCmd("curl", "-s", "--unix-socket", n.sock, "http://weft/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatalf("goroutine profile of %s: %v", n.name, err)
	}
	var l procLevel
	if _, err := fmt.Sscanf(out, "goroutine profile: total %d", &l.goroutines); err != nil {
		t.Fatalf("goroutine profile of %s: %v: %.200q", n.name, err, out)
	}
	fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(n.proc.Pid()), "fd"))
	if err != nil {
		t.Fatalf("open files of %s: %v", n.name, err)
	}
	l.fds = len(fds)
	return l
}

const (
	thousandFlows   = 1000
	thousandBytes   = 256 << 10
	thousandLoss    = 10 // per mille, each way
	thousandTimeout = 6 * time.Minute
	// thousandSnapshot is when the flows still open are described (and, with WEFT_E2E_STALLDIR, the
	// sockets and goroutines dumped): before tcpprobe's own 5-minute deadline ends the stuck flows.
	thousandSnapshot = 4 * time.Minute
)

// TestProxyThousandFlows: 1000 concurrent flows of 256 KiB at 1% loss each way, echoed and checked with
// sha256, all intact; once netstack's TIME_WAIT (15 s) has passed, the proxy tables of both nodes are
// empty and their goroutines and open files are back to where they were. If it stalls, set
// WEFT_E2E_STALLDIR to get both hosts' TCP sockets and both nodes' goroutines written there.
//
// The clients use cubic (tcpprobe sets it per socket). With this machine's default, bbr, the test used
// to stall now and then: on two busy cores netstack acknowledges late, the clients retransmit, and a
// BBR client could collapse its bandwidth estimate and crawl (ss showed a 3 kbit/s pacing rate with a
// 512 KiB window open and its last 30-42 KB unsent: the "bytes never sent by the source node" of issue
// 8's notes). The README lists it under known limits.
func TestProxyThousandFlows(t *testing.T) {
	a, b, ha, hb := proxyPair(t)
	const addr = "10.144.144.1:7800"
	startProbe(t, ha, "echo-server", addr)
	setLossBoth(t, thousandLoss, ha, hb)
	tablesEmpty := func(timeout time.Duration) time.Duration {
		var fa, fb []control.ProxyFlow
		return waitFor(t, timeout, func() bool {
			fa, fb = a.proxyFlows(), b.proxyFlows()
			return len(fa) == 0 && len(fb) == 0
		}, func() string {
			return fmt.Sprintf("proxy tables not empty: alpha %d flows, beta %d flows, e.g. %+v", len(fa), len(fb), slices.Concat(fa, fb)[0])
		})
	}
	// Warm up (sessions, pools), then take the levels once the warm-up flows are gone.
	runProbe(t, hb, time.Minute, "flood", addr, "8", strconv.Itoa(64<<10))
	tablesEmpty(45 * time.Second)
	beforeA, beforeB := levelOf(t, a), levelOf(t, b)
	before := countersOf(a, b)

	start := time.Now()
	out, ok, snapshot := watchedProbe(t, hb, thousandSnapshot, thousandTimeout,
		func() string {
			return "flows still listed:\n" + describeFlows(b) + "\n" + describeFlows(a) + "\n" + stallDump(t, a, b)
		},
		"flood", addr, strconv.Itoa(thousandFlows), strconv.Itoa(thousandBytes))
	took := time.Since(start)
	if !ok || !strings.HasPrefix(out, fmt.Sprintf("ok %d flows", thousandFlows)) {
		now := b.status().Proxy
		t.Fatalf("%d concurrent flows of %d bytes at %d%% loss each way, after %v:\n%s\n"+
			"beta's proxy meanwhile: %d flows opened, %d refused, %d reset, %d active; %d bytes sent, %d received over KCP\n"+
			"drops (netstack's included): alpha %v, beta %v\nkernel TCP counters: alpha's host %s; beta's host %s\n%s",
			thousandFlows, thousandBytes, thousandLoss/10, took.Round(time.Millisecond), out,
			now.FlowsOpened-before.b.FlowsOpened, now.FlowsRefused-before.b.FlowsRefused, now.FlowsReset-before.b.FlowsReset,
			now.FlowsActive, now.KCPBytesTx-before.b.KCPBytesTx, now.KCPBytesRx-before.b.KCPBytesRx,
			a.status().Drops, b.status().Drops, kernelTCP(ha), kernelTCP(hb), snapshot)
	}
	checkProxied(t, a, b, before, thousandFlows, thousandFlows*thousandBytes)
	if got := b.status().Proxy.KCPBytesRx - before.b.KCPBytesRx; got < thousandFlows*thousandBytes {
		t.Errorf("beta received %d bytes over KCP, want at least %d: the echoes did not all come back through the proxy", got, thousandFlows*thousandBytes)
	}
	t.Logf("%d x %d bytes echoed intact at %d%% loss each way in %v (%.0f Mbit/s each way)", thousandFlows, thousandBytes,
		thousandLoss/10, took.Round(time.Millisecond), float64(thousandFlows*thousandBytes)*8/took.Seconds()/1e6)
	t.Logf("drops (netstack's included): alpha %v, beta %v", a.status().Drops, b.status().Drops)
	t.Logf("kernel TCP counters: alpha's host %s; beta's host %s", kernelTCP(ha), kernelTCP(hb))

	emptied := tablesEmpty(60 * time.Second)
	t.Logf("proxy tables empty on both nodes %v after the last flow", emptied.Round(time.Second))
	for _, c := range []struct {
		n      *weftNode
		before procLevel
	}{{a, beforeA}, {b, beforeB}} {
		var now procLevel
		waitFor(t, 30*time.Second, func() bool {
			now = levelOf(t, c.n)
			return now.goroutines <= c.before.goroutines+5 && now.fds <= c.before.fds+2
		}, func() string {
			return fmt.Sprintf("%s leaks after %d flows: goroutines %d -> %d (margin 5), open files %d -> %d (margin 2)",
				c.n.name, thousandFlows, c.before.goroutines, now.goroutines, c.before.fds, now.fds)
		})
		t.Logf("%s: goroutines %d -> %d, open files %d -> %d", c.n.name, c.before.goroutines, now.goroutines, c.before.fds, now.fds)
	}
}

// stallDump is a debugging aid: with WEFT_E2E_STALLDIR set it writes the TCP sockets of both hosts
// (ss -tnoi) and both nodes' goroutines there, and says so.
func stallDump(t *testing.T, nodes ...*weftNode) string {
	dir := os.Getenv("WEFT_E2E_STALLDIR")
	if dir == "" {
		return ""
	}
	os.MkdirAll(dir, 0o755)
	for _, n := range nodes {
		ss, _ := n.host.RunErr(context.Background(), "ss", "-tnoim")
		os.WriteFile(filepath.Join(dir, n.name+".ss"), []byte(ss), 0o644)
		g, _ := n.host.RunErr(context.Background(), "curl", "-s", "--unix-socket", n.sock, "http://weft/debug/pprof/goroutine?debug=2")
		os.WriteFile(filepath.Join(dir, n.name+".goroutines"), []byte(g), 0o644)
	}
	return "sockets and goroutines written to " + dir
}

// kernelTCP is the host's kernel TCP counters that tell a lost or refused segment from a slow one
// (nstat, non-zero ones only): retransmissions and timeouts of the kernel's sockets, and segments they
// dropped for a full receive queue or backlog or a closed window.
func kernelTCP(h *netlab.Host) string {
	out, err := h.RunErr(context.Background(), "nstat", "-az", "TcpRetransSegs", "TcpExtTCPTimeouts", "TcpExtTCPRcvQDrop",
		"TcpExtTCPBacklogDrop", "TcpExtTCPZeroWindowDrop", "TcpExtTCPOFODrop", "TcpExtTCPLossProbes")
	if err != nil {
		return "nstat: " + err.Error()
	}
	var parts []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "#") && f[1] != "0" {
			parts = append(parts, f[0]+"="+f[1])
		}
	}
	return strings.Join(parts, " ")
}
