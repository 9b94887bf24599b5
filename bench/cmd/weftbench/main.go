// Command weftbench measures weft against the raw underlay on one machine, in network namespaces it
// builds and removes itself (run as root; `make bench` builds it and its helpers and runs it). All
// figures come from one run, so ratios between paths hold on a noisy machine. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weft-vpn/weft/bench/internal/lab"
)

// config is what a run needs: binaries, output place and the size of the run.
type config struct {
	weft, delayBin, rrBin string
	out                   string // results directory
	tmp                   string // state dirs, sockets and logs; removed at the end
	kcp                   bool   // weft up knows --tcp-proxy
	quick                 bool

	reps   int   // repetitions per throughput cell
	secs   int   // seconds per iperf3 run
	losses []int // per mille, each way
	flows  []int // iperf3 -P values
	pings  int   // pings, round trips and connects per latency figure
	holdN  int   // idle proxied connections for the memory figure
}

func main() {
	weft := flag.String("weft", "../bin/weft", "weft binary to measure")
	out := flag.String("out", "results", "directory for latest.md and throughput.png")
	quick := flag.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "one repetition, fewer cells (also BENCH_QUICK=1)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *weft, *out, *quick); err != nil {
		fmt.Fprintln(os.Stderr, "weftbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, weft, out string, quick bool) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (it creates network namespaces); try: sudo make bench")
	}
	cfg, err := newConfig(weft, out, quick)
	if err != nil {
		return err
	}
	defer os.RemoveAll(cfg.tmp)
	if err := lab.Sweep(); err != nil {
		return fmt.Errorf("remove namespaces of an earlier killed run: %w", err)
	}
	start := time.Now()
	res := newResults()
	nets := []struct {
		name  string
		delay time.Duration
		subMs bool // the sub-ms network also holds the relay host and the cost figures
	}{{"sub-ms", 0, true}, {"20ms", 20 * time.Millisecond, false}}
	for _, nc := range nets {
		if err := measureOn(ctx, cfg, res, nc.name, nc.delay, nc.subMs); err != nil {
			return err
		}
	}
	res.elapsed = time.Since(start)
	md := renderMarkdown(cfg, res)
	fmt.Println(md)
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.out, "latest.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := drawChart(cfg, res, filepath.Join(cfg.out, "throughput.png")); err != nil {
		return fmt.Errorf("draw chart: %w", err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s and %s in %v\n", filepath.Join(cfg.out, "latest.md"),
		filepath.Join(cfg.out, "throughput.png"), res.elapsed.Round(time.Second))
	return nil
}

// newConfig finds the binaries, checks the tools and sizes the run.
func newConfig(weft, out string, quick bool) (*config, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(self)
	cfg := &config{delayBin: filepath.Join(dir, "delay"), rrBin: filepath.Join(dir, "rrtest"), out: out, quick: quick,
		reps: 3, secs: 5, losses: []int{0, 10, 50}, flows: []int{1, 4}, pings: 200, holdN: 1000}
	if quick {
		cfg.reps, cfg.secs, cfg.losses, cfg.flows = 1, 3, []int{0, 50}, []int{1}
	}
	if cfg.weft, err = filepath.Abs(weft); err != nil {
		return nil, err
	}
	for _, b := range []string{cfg.weft, cfg.delayBin, cfg.rrBin} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%w (build with `make bench` from the repository root)", err)
		}
	}
	for _, tool := range []string{"ip", "nft", "ethtool", "iperf3", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: run ./scripts/install-deps.sh", tool)
		}
	}
	help, _ := exec.Command(cfg.weft, "up", "--help").CombinedOutput()
	cfg.kcp = strings.Contains(string(help), "--tcp-proxy")
	if cfg.tmp, err = os.MkdirTemp("", "weftbench-"); err != nil {
		return nil, err
	}
	return cfg, nil
}

// measureOn builds one network, measures everything on it and removes it again (also on error and
// on Ctrl-C, which cancels ctx and so the measurement in progress).
func measureOn(ctx context.Context, cfg *config, res *results, name string, delay time.Duration, subMs bool) (err error) {
	fmt.Fprintf(os.Stderr, "== %s network: building\n", name)
	n, err := buildNetwork(cfg, name, delay, subMs)
	defer func() {
		if n == nil {
			return
		}
		if cerr := n.lab.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("clean up %s network: %w", name, cerr)
		}
	}()
	if err != nil {
		return err
	}
	m := &measurer{cfg: cfg, res: res, n: n, subMs: subMs}
	return m.all(ctx)
}
