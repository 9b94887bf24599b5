package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weft-vpn/weft/bench/internal/lab"
)

// throughput is the result of one iperf3 run.
type throughput struct {
	mbps  float64 // received, Mbit/s
	bytes float64 // received bytes
}

// iperf runs iperf3 from h to dst for secs seconds with flows parallel streams and congestion control
// cc, and returns what the receiver got.
func iperf(ctx context.Context, h *lab.Host, dst string, secs, flows int, cc string) (throughput, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs+20)*time.Second)
	defer cancel()
	out, err := h.Command(ctx, "iperf3", "-c", dst, "-t", strconv.Itoa(secs), "-P", strconv.Itoa(flows),
		"-C", cc, "-J", "--connect-timeout", "5000").Output()
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		return throughput{}, fmt.Errorf("iperf3 to %s: %v (output not JSON: %v)", dst, err, jerr)
	}
	if res.Error != "" {
		return throughput{}, fmt.Errorf("iperf3 to %s: %s", dst, res.Error)
	}
	if err != nil {
		return throughput{}, fmt.Errorf("iperf3 to %s: %w", dst, err)
	}
	return throughput{mbps: res.End.SumReceived.BitsPerSecond / 1e6, bytes: res.End.SumReceived.Bytes}, nil
}

var pingTime = regexp.MustCompile(`time=([0-9.]+) ms`)

// pingRTTs sends count pings from h to dst, one every 10ms, and returns the RTTs in microseconds of
// those answered.
func pingRTTs(ctx context.Context, h *lab.Host, dst string, count int) ([]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := h.Command(ctx, "ping", "-n", "-c", strconv.Itoa(count), "-i", "0.01", "-W", "1", dst).Output()
	var rtts []float64
	for _, m := range pingTime.FindAllStringSubmatch(string(out), -1) {
		if v, perr := strconv.ParseFloat(m[1], 64); perr == nil {
			rtts = append(rtts, v*1000)
		}
	}
	if len(rtts) == 0 {
		return nil, fmt.Errorf("ping %s: no replies: %v", dst, err)
	}
	return rtts, nil
}

// rrSamples runs `rrtest MODE -addr dst:7000 -n count` on h and returns its samples in microseconds.
func rrSamples(ctx context.Context, cfg *config, h *lab.Host, mode, dst string, count int) ([]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	out, err := h.Command(ctx, cfg.rrBin, mode, "-addr", dst+":7000", "-n", strconv.Itoa(count), "-timeout", "60s").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("rrtest %s to %s: %w: %s", mode, dst, err, strings.TrimSpace(string(out)))
	}
	var res struct {
		Samples []float64 `json:"samples_us"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Samples) == 0 {
		return nil, fmt.Errorf("rrtest %s to %s: bad output %q", mode, dst, out)
	}
	return res.Samples, nil
}

// holdConns opens count idle connections from h to dst:7000 through rrtest hold and returns the
// process once they are all open; stop it to close them.
func holdConns(h *lab.Host, cfg *config, dst string, count int) (*lab.Proc, error) {
	p, err := h.Start(cfg.rrBin, "hold", "-addr", dst+":7000", "-n", strconv.Itoa(count), "-timeout", "3m")
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(p.Log(5), "ready") {
			return p, nil
		}
		if done, code := p.Exited(); done {
			return nil, fmt.Errorf("rrtest hold exited with code %d: %s", code, p.Log(5))
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.Stop()
	return nil, fmt.Errorf("%d connections to %s not open within 60s", count, dst)
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat (100 on every Linux build
// Go supports).
const clockTicks = 100

// cpuSeconds returns utime+stime of the processes, in seconds.
func cpuSeconds(procs []*lab.Proc) (float64, error) {
	var total float64
	for _, p := range procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
		if err != nil {
			return 0, fmt.Errorf("cpu time of %s: %w", p, err)
		}
		// Fields after the command name (which may hold spaces) start at state, field 3.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			return 0, fmt.Errorf("cpu time of %s: short /proc stat %q", p, s)
		}
		ut, err1 := strconv.ParseFloat(f[11], 64)
		st, err2 := strconv.ParseFloat(f[12], 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("cpu time of %s: bad /proc stat %q", p, s)
		}
		total += (ut + st) / clockTicks
	}
	return total, nil
}

// rssKiB returns VmRSS of a process in KiB.
func rssKiB(p *lab.Proc) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return 0, fmt.Errorf("memory of %s: %w", p, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		}
	}
	return 0, fmt.Errorf("memory of %s: no VmRSS", p)
}

// percentile returns the p-th percentile (0..100, nearest rank) of xs; NaN-free input assumed.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// median returns the median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
