package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"time"
)

// renderMarkdown writes the report: the machine, then throughput, relay, latency and cost tables, each
// with absolute figures and ratios to the raw underlay of the same run.
func renderMarkdown(cfg *config, r *results) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	mode := fmt.Sprintf("full: %d repetitions (medians), %d s per iperf3 run", cfg.reps, cfg.secs)
	if cfg.quick {
		mode = fmt.Sprintf("BENCH_QUICK: %d repetition, %d s per iperf3 run, fewer cells", cfg.reps, cfg.secs)
	}
	w("# weft benchmark\n\n")
	w("| | |\n| --- | --- |\n")
	w("| date | %s |\n| kernel | %s |\n| CPU | %s |\n", time.Now().Format(time.RFC3339), cmdLine("uname", "-r"), cpuModel())
	w("| weft | %s (git %s) |\n", cmdLine(cfg.weft, "version"), cmdLine("git", "describe", "--always", "--dirty"))
	w("| run | %s; total %v |\n\n", mode, r.elapsed.Round(time.Second))
	w("Loss is random, per mille of packets each way (nftables at each host's veth ingress); offloads off on the\n")
	w("veths. 20 ms = userspace delay wire, 10 ms each way (bench/README.md). CC = congestion control of iperf3's\n")
	w("connection at both ends; weft's own TCP underlay uses the namespace default. Mbit/s received, median.\n\n")

	kcpNA := "n/a (not built)"
	w("## Throughput (Mbit/s)\n\n")
	w("| RTT | loss | CC | flows | raw | udp | tcp | kcp | udp/raw | tcp/raw | kcp/raw | kcp/udp |\n")
	w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, net := range []string{"sub-ms", "20ms"} {
		for _, loss := range cfg.losses {
			for _, cc := range []string{"cubic", "bbr"} {
				for _, f := range cfg.flows {
					k := tputKey{net: net, loss: loss, cc: cc, flows: f}
					if _, ok := r.tput[withPath(k, pathRaw)]; !ok {
						continue
					}
					v := map[string]float64{}
					for _, p := range []string{pathRaw, pathUDP, pathTCP, pathKCP} {
						v[p] = median(r.tput[withPath(k, p)])
					}
					kcp, kr, ku := kcpNA, kcpNA, kcpNA
					if cfg.kcp {
						kcp, kr, ku = mbps(v[pathKCP]), ratio(v[pathKCP], v[pathRaw]), ratio(v[pathKCP], v[pathUDP])
					}
					w("| %s | %.1f%% | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", net, float64(loss)/10, cc, f,
						mbps(v[pathRaw]), mbps(v[pathUDP]), mbps(v[pathTCP]), kcp,
						ratio(v[pathUDP], v[pathRaw]), ratio(v[pathTCP], v[pathRaw]), kr, ku)
				}
			}
		}
	}

	w("\n## Relayed a -> b -> c vs direct a -> b (udp tunnel, sub-ms, 0%% loss, cubic)\n\n")
	w("| flows | direct | relayed | relayed/direct |\n| --- | --- | --- | --- |\n")
	for _, f := range cfg.flows {
		d, rl := median(r.relay[[2]string{"direct", fmt.Sprint(f)}]), median(r.relay[[2]string{"relay", fmt.Sprint(f)}])
		w("| %d | %s | %s | %s |\n", f, mbps(d), mbps(rl), ratio(rl, d))
	}

	w("\n## Latency at 0%% loss (ms; %d samples each)\n\n", cfg.pings)
	w("| RTT | path | ping p50 | ping p99 | 64 B TCP RR p50 | RR p99 | connect p50 | connect p99 | ping p50/raw | RR p50/raw | connect p50/raw |\n")
	w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, net := range []string{"sub-ms", "20ms"} {
		raw := r.lat[[2]string{net, pathRaw}]
		for _, p := range []string{pathRaw, pathUDP, pathTCP, pathKCP} {
			l := r.lat[[2]string{net, p}]
			if l == nil {
				if p == pathKCP && !cfg.kcp {
					w("| %s | kcp | %s |||||||||\n", net, kcpNA)
				}
				continue
			}
			w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", net, p,
				ms(percentile(l.ping, 50)), ms(percentile(l.ping, 99)), ms(percentile(l.rr, 50)), ms(percentile(l.rr, 99)),
				ms(percentile(l.connect, 50)), ms(percentile(l.connect, 99)),
				ratioOf(l.ping, raw, func(x *latency) []float64 { return x.ping }),
				ratioOf(l.rr, raw, func(x *latency) []float64 { return x.rr }),
				ratioOf(l.connect, raw, func(x *latency) []float64 { return x.connect }))
		}
	}

	w("\n## Cost (sub-ms network; CPU over the 0%% loss runs, both weft processes together)\n\n")
	w("RSS of both weft processes (a / b): idle after the latency tests; then with %d idle proxied connections\n"+
		"open (before any throughput run, so the growth is theirs); after all runs. Per proxied flow = growth of both\n"+
		"processes with the idle connections / %d.\n\n", cfg.holdN, cfg.holdN)
	w("| path | CPU s per GB moved | RSS idle a / b (MiB) | with %d idle proxied conns a / b (MiB) | RSS after the runs a / b (MiB) | per proxied flow (KiB) |\n", cfg.holdN)
	w("| --- | --- | --- | --- | --- | --- |\n")
	for _, p := range []string{pathUDP, pathTCP, pathKCP} {
		mm, cpu := r.mem[p], r.cpu[p]
		if mm == nil {
			if p == pathKCP && !cfg.kcp {
				w("| kcp | %s | | | | |\n", kcpNA)
			}
			continue
		}
		cost := "-"
		if cpu != nil && cpu[1] > 0 {
			cost = fmt.Sprintf("%.2f", cpu[0]/(cpu[1]/1e9))
		}
		held, per := "-", "-"
		if p == pathKCP && mm.held[0] > 0 {
			held = fmt.Sprintf("%s / %s", mib(mm.held[0]), mib(mm.held[1]))
			per = fmt.Sprintf("%.1f", (mm.held[0]+mm.held[1]-mm.idle[0]-mm.idle[1])/float64(cfg.holdN))
		}
		w("| %s | %s | %s / %s | %s | %s / %s | %s |\n", p, cost, mib(mm.idle[0]), mib(mm.idle[1]),
			held, mib(mm.loaded[0]), mib(mm.loaded[1]), per)
	}
	if len(r.errs) > 0 {
		w("\n## Failed or retried measurements (%d)\n\n", len(r.errs))
		for _, e := range r.errs {
			w("- %s\n", strings.ReplaceAll(e, "\n", " "))
		}
	}
	return b.String()
}

// withPath returns k for path p.
func withPath(k tputKey, p string) tputKey { k.path = p; return k }

func mbps(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 || math.IsNaN(a/b) {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func ms(us float64) string {
	if us == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", us/1000)
}

func mib(kib float64) string { return fmt.Sprintf("%.1f", kib/1024) }

// ratioOf returns the ratio of the medians of xs and of the raw path's samples.
func ratioOf(xs []float64, raw *latency, pick func(*latency) []float64) string {
	if raw == nil {
		return "-"
	}
	return ratio(percentile(xs, 50), percentile(pick(raw), 50))
}

// cmdLine runs a command and returns its first line of output, or "unknown".
func cmdLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// cpuModel returns the CPU model name and the number of CPUs.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	model, n := "unknown", 0
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			switch strings.TrimSpace(k) {
			case "model name":
				model = strings.TrimSpace(v)
			case "processor":
				n++
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs", model, n)
}
