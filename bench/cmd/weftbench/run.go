package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/weft-vpn/weft/bench/internal/lab"
)

// tputKey names one throughput cell.
type tputKey struct {
	net   string // "sub-ms" or "20ms"
	loss  int    // per mille each way
	cc    string // cubic or bbr
	flows int
	path  string
}

// latency holds the latency figures of one path on one network, in microseconds.
type latency struct {
	ping, rr, connect []float64
}

// memory is the resident memory of a path's two weft processes, in KiB.
type memory struct {
	idle, loaded [2]float64
	held         [2]float64 // with holdN idle proxied connections (kcp only)
}

// results collects every figure of a run.
type results struct {
	tput    map[tputKey][]float64   // Mbit/s per repetition
	cpu     map[string]*[2]float64  // path -> {CPU seconds, bytes} over the sub-ms 0% loss runs
	lat     map[[2]string]*latency  // {net, path}
	mem     map[string]*memory      // path
	relay   map[[2]string][]float64 // {"direct"|"relay", flows} -> Mbit/s
	errs    []string
	elapsed time.Duration
}

func newResults() *results {
	return &results{tput: map[tputKey][]float64{}, cpu: map[string]*[2]float64{}, lat: map[[2]string]*latency{},
		mem: map[string]*memory{}, relay: map[[2]string][]float64{}}
}

// fail records a measurement that failed; the run goes on and the report lists it.
func (r *results) fail(err error) {
	fmt.Fprintln(os.Stderr, "  FAILED:", err)
	r.errs = append(r.errs, err.Error())
}

// measurer runs the measurements of one network.
type measurer struct {
	cfg   *config
	res   *results
	n     *network
	subMs bool
}

// all measures, in order: latency, idle memory, memory with idle proxied connections, throughput at
// each loss rate, relay, loaded memory. The idle connections are measured before the throughput runs:
// after them the processes hold freed heap that new connections would reuse, which hides their cost.
func (m *measurer) all(ctx context.Context) error {
	if err := m.latency(ctx); err != nil {
		return err
	}
	if m.subMs {
		// Measured after the latency tests, not at once: start-up (Argon2id) memory is freed by then.
		m.memory(func(mm *memory) *[2]float64 { return &mm.idle })
		m.heldConns()
	}
	for _, loss := range m.cfg.losses {
		if err := m.throughput(ctx, loss); err != nil {
			return err
		}
	}
	if err := m.n.setLoss(0); err != nil {
		return err
	}
	if m.subMs {
		if err := m.relayed(ctx); err != nil {
			return err
		}
		m.memory(func(mm *memory) *[2]float64 { return &mm.loaded })
	}
	return nil
}

// latency measures ping, 64-byte request/response and connect() times at 0% loss.
func (m *measurer) latency(ctx context.Context) error {
	for _, p := range m.n.paths() {
		fmt.Fprintf(os.Stderr, "  latency %s %s\n", m.n.name, p)
		l := &latency{}
		m.res.lat[[2]string{m.n.name, p}] = l
		dst := m.n.dst[p]
		var err error
		if l.ping, err = pingRTTs(ctx, m.n.a, dst, m.cfg.pings); err != nil {
			m.res.fail(fmt.Errorf("%s %s ping: %w", m.n.name, p, err))
		}
		if l.rr, err = rrSamples(ctx, m.cfg, m.n.a, "rr", dst, m.cfg.pings); err != nil {
			m.res.fail(fmt.Errorf("%s %s request/response: %w", m.n.name, p, err))
		}
		if l.connect, err = rrSamples(ctx, m.cfg, m.n.a, "connect", dst, m.cfg.pings); err != nil {
			m.res.fail(fmt.Errorf("%s %s connect: %w", m.n.name, p, err))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// bbrCell reports whether this network and loss rate get the BBR rows (0% sub-ms, 5% at 20 ms).
func (m *measurer) bbrCell(loss int) bool {
	return (m.subMs && loss == 0) || (!m.subMs && loss == 50)
}

// throughput measures every path at one loss rate, repetitions interleaved across paths so that a
// noisy moment of the machine hits all paths alike.
func (m *measurer) throughput(ctx context.Context, loss int) error {
	if err := m.n.setLoss(loss); err != nil {
		return err
	}
	for rep := 0; rep < m.cfg.reps; rep++ {
		type run struct {
			cc    string
			flows int
		}
		var runs []run
		for _, f := range m.cfg.flows {
			runs = append(runs, run{"cubic", f})
		}
		if m.bbrCell(loss) {
			runs = append(runs, run{"bbr", 1})
		}
		for _, r := range runs {
			for _, p := range m.n.paths() {
				if err := m.iperfCell(ctx, tputKey{m.n.name, loss, r.cc, r.flows, p}, rep); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// iperfCell runs one iperf3 measurement, recording throughput and (sub-ms, 0% loss, tunnel paths)
// the CPU time of the path's weft processes.
func (m *measurer) iperfCell(ctx context.Context, k tputKey, rep int) error {
	procs := m.n.nodes[k.path]
	cpu0, cpuErr := cpuSeconds(procs)
	label := fmt.Sprintf("%s %.1f%% %s P%d %s #%d", k.net, float64(k.loss)/10, k.cc, k.flows, k.path, rep+1)
	t, err := m.iperfRetry(ctx, label, m.n.dst[k.path], k.flows, k.cc, procs)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		m.res.fail(fmt.Errorf("%s: %w", label, err))
		return nil
	}
	fmt.Fprintf(os.Stderr, "  %-32s %8.1f Mbit/s\n", label, t.mbps)
	m.res.tput[k] = append(m.res.tput[k], t.mbps)
	if m.subMs && k.loss == 0 && len(procs) > 0 && cpuErr == nil {
		if cpu1, err := cpuSeconds(procs); err == nil {
			acc := m.res.cpu[k.path]
			if acc == nil {
				acc = &[2]float64{}
				m.res.cpu[k.path] = acc
			}
			acc[0] += cpu1 - cpu0
			acc[1] += t.bytes
		}
	}
	return nil
}

// iperfRetry runs iperf3 from a to dst; after a failure (at high loss iperf3's control connection can
// break, and a tunnel may be down for a moment) it restarts the iperf3 servers, waits for dst to
// answer pings and tries once more. Each first failure is reported as a note.
func (m *measurer) iperfRetry(ctx context.Context, label, dst string, flows int, cc string, procs []*lab.Proc) (throughput, error) {
	t, err := iperf(ctx, m.n.a, dst, m.cfg.secs, flows, cc)
	if err == nil || ctx.Err() != nil {
		return t, err
	}
	m.res.fail(fmt.Errorf("%s (retried): %w", label, err))
	for h := range m.n.iperfd {
		if err := m.n.restartIperf(h); err != nil {
			return t, err
		}
	}
	if err := waitTunnel(m.n.a, dst, procs...); err != nil {
		return t, err
	}
	return iperf(ctx, m.n.a, dst, m.cfg.secs, flows, cc)
}

// relayed measures a -> c through b's weft relay next to the direct a -> b udp tunnel.
func (m *measurer) relayed(ctx context.Context) error {
	if m.n.relay == "" {
		return nil
	}
	for rep := 0; rep < m.cfg.reps; rep++ {
		for _, f := range m.cfg.flows {
			for _, leg := range []struct{ name, dst string }{{"direct", m.n.dst[pathUDP]}, {"relay", m.n.relay}} {
				t, err := m.iperfRetry(ctx, leg.name, leg.dst, f, "cubic", m.n.nodes[pathUDP])
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					m.res.fail(fmt.Errorf("%s P%d: %w", leg.name, f, err))
					continue
				}
				fmt.Fprintf(os.Stderr, "  %-32s %8.1f Mbit/s\n", fmt.Sprintf("%s udp P%d #%d", leg.name, f, rep+1), t.mbps)
				k := [2]string{leg.name, fmt.Sprint(f)}
				m.res.relay[k] = append(m.res.relay[k], t.mbps)
			}
		}
	}
	return nil
}

// memory records VmRSS of both weft processes of every tunnel path into the field pick selects.
func (m *measurer) memory(pick func(*memory) *[2]float64) {
	for path, procs := range m.n.nodes {
		mm := m.res.mem[path]
		if mm == nil {
			mm = &memory{}
			m.res.mem[path] = mm
		}
		dst := pick(mm)
		for i, p := range procs {
			v, err := rssKiB(p)
			if err != nil {
				m.res.fail(err)
			}
			dst[i] = v
		}
	}
}

// heldConns measures the memory of the kcp path's weft processes with holdN idle proxied connections
// open (the delta to the idle figure, per connection, is the memory per proxied flow).
func (m *measurer) heldConns() {
	procs := m.n.nodes[pathKCP]
	if len(procs) == 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "  memory with %d idle proxied connections\n", m.cfg.holdN)
	p, err := holdConns(m.n.a, m.cfg, m.n.dst[pathKCP], m.cfg.holdN)
	if err != nil {
		m.res.fail(fmt.Errorf("kcp idle connections: %w", err))
		return
	}
	defer p.Stop()
	time.Sleep(2 * time.Second) // let buffers settle
	mm := m.res.mem[pathKCP]
	if mm == nil {
		mm = &memory{}
		m.res.mem[pathKCP] = mm
	}
	for i, wp := range procs {
		v, err := rssKiB(wp)
		if err != nil {
			m.res.fail(err)
		}
		mm.held[i] = v
	}
}
