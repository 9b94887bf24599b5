package control

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// empty is what a table shows for a missing value.
const empty = "-"

// WriteJSON writes v as indented JSON followed by a newline: the --json output of the CLI.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// WriteStatus writes s as aligned "key: value" lines; lists take one line per element.
func WriteStatus(w io.Writer, s Status) error {
	t := newTable(w)
	t.row("hostname:", s.Hostname)
	t.row("node id:", s.NodeID)
	t.row("ipv4:", s.IPv4)
	t.row("network:", s.NetworkName)
	if s.Certificate != "" {
		t.row("certificate:", s.Certificate)
	}
	t.row("device:", s.Dev)
	t.row("mtu:", strconv.Itoa(s.MTU))
	t.list("listeners:", s.Listeners)
	t.row("version:", s.Version)
	t.row("uptime:", formatDuration(time.Duration(s.UptimeS*float64(time.Second))))
	t.row("proxy:", formatProxyStatus(s.Proxy))
	nat := s.NAT
	if !s.Punch {
		nat += ", punching off (--no-punch)"
	}
	t.row("nat:", nat)
	t.list("endpoints:", s.Endpoints)
	t.list("warnings:", s.Warnings)
	t.list("drops:", formatDrops(s.Drops))
	return t.flush("status")
}

// WritePeers writes one aligned row per peer, sorted by virtual IPv4 address. now is the time the
// handshake ages are computed against (time.Now() in the CLI).
func WritePeers(w io.Writer, ps []Peer, now time.Time) error {
	ps = slices.Clone(ps)
	slices.SortStableFunc(ps, func(a, b Peer) int {
		return cmp.Or(compareAddr(a.IPv4, b.IPv4), cmp.Compare(a.NodeID, b.NodeID))
	})
	t := newTable(w)
	t.row("HOSTNAME", "NODE_ID", "IPV4", "TUNNEL", "ENDPOINT", "NEXT_HOP", "LATENCY", "RX", "TX", "LAST_HANDSHAKE",
		"PATH", "PUNCH", "TO_DIRECT", "CANDIDATES")
	for _, p := range ps {
		t.row(p.Hostname, p.NodeID, p.IPv4, p.Tunnel, p.Endpoint, p.NextHop, formatLatency(p.LatencyMS),
			formatBytes(p.RxBytes), formatBytes(p.TxBytes), formatAge(p.LastHandshake, now),
			p.Path, formatPunch(p.PunchAttempts, p.PunchFailures), formatLatency(p.TimeToDirectMS), strings.Join(p.Candidates, ","))
	}
	return t.flush("peers")
}

// formatPunch shows punch attempts and the failures in a row among them, e.g. "3 (2 failed)".
func formatPunch(attempts, failures int) string {
	switch {
	case attempts == 0:
		return empty
	case failures == 0:
		return strconv.Itoa(attempts)
	}
	return fmt.Sprintf("%d (%d failed)", attempts, failures)
}

// WriteRoutes writes one aligned row per route, sorted by prefix (address, then length).
func WriteRoutes(w io.Writer, rs []Route) error {
	rs = slices.Clone(rs)
	slices.SortStableFunc(rs, func(a, b Route) int {
		return cmp.Or(comparePrefix(a.Prefix, b.Prefix), cmp.Compare(a.NodeID, b.NodeID))
	})
	t := newTable(w)
	t.row("PREFIX", "HOSTNAME", "NODE_ID", "NEXT_HOP", "HOPS", "COST", "PROXY")
	for _, r := range rs {
		t.row(r.Prefix, r.Hostname, r.NodeID, r.NextHop, strconv.Itoa(r.Hops), formatLatency(r.Cost), r.Proxy)
	}
	return t.flush("routes")
}

// WriteProxy writes one aligned row per proxied TCP flow, sorted by source, then destination ("ip:port",
// numerically).
func WriteProxy(w io.Writer, fs []ProxyFlow) error {
	fs = slices.Clone(fs)
	slices.SortStableFunc(fs, func(a, b ProxyFlow) int {
		return cmp.Or(compareAddrPort(a.Src, b.Src), compareAddrPort(a.Dst, b.Dst),
			cmp.Compare(a.Side, b.Side), cmp.Compare(a.Peer, b.Peer))
	})
	t := newTable(w)
	t.row("SRC", "DST", "SIDE", "TRANSPORT", "STATE", "UP", "DOWN", "AGE", "PEER")
	for _, f := range fs {
		t.row(f.Src, f.Dst, f.Side, f.Transport, f.State, formatBytes(f.BytesUp), formatBytes(f.BytesDown),
			formatDuration(time.Duration(f.AgeS*float64(time.Second))), f.Peer)
	}
	return t.flush("proxy")
}

// table writes aligned rows through a tabwriter.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer) *table {
	return &table{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
}

// row writes one line; empty cells show as "-" and every cell is made safe for a terminal.
func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = cell(c)
	}
	// Write errors are sticky in tabwriter's underlying writer and reported by Flush.
	_, _ = io.WriteString(t.tw, strings.Join(cells, "\t")+"\n")
}

// list writes key with the first value, then one continuation line per further value.
func (t *table) list(key string, values []string) {
	if len(values) == 0 {
		t.row(key, "")
		return
	}
	for i, v := range values {
		if i > 0 {
			key = " "
		}
		t.row(key, v)
	}
}

func (t *table) flush(what string) error {
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("write %s table: %w", what, err)
	}
	return nil
}

// cell returns s with every non-printable rune (tabs, newlines, terminal escapes sent by a hostile peer)
// replaced by '?', or "-" when s is empty.
func cell(s string) string {
	if s == "" {
		return empty
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
}

// compareParsed orders two strings by their parsed values; unparsable ones sort last, by text.
func compareParsed[T any](a, b string, parse func(string) (T, error), compare func(T, T) int) int {
	va, errA := parse(a)
	vb, errB := parse(b)
	switch {
	case errA == nil && errB == nil:
		return compare(va, vb)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	default:
		return strings.Compare(a, b)
	}
}

// compareAddr orders IP addresses numerically.
func compareAddr(a, b string) int {
	return compareParsed(a, b, netip.ParseAddr, netip.Addr.Compare)
}

// compareAddrPort orders "ip:port" strings by address, then port.
func compareAddrPort(a, b string) int {
	return compareParsed(a, b, netip.ParseAddrPort, netip.AddrPort.Compare)
}

// comparePrefix orders prefixes by address, then by length.
func comparePrefix(a, b string) int {
	return compareParsed(a, b, netip.ParsePrefix, func(pa, pb netip.Prefix) int {
		return cmp.Or(pa.Addr().Compare(pb.Addr()), cmp.Compare(pa.Bits(), pb.Bits()))
	})
}

// formatBytes renders n in IEC units: "512 B", "1.5 KiB", "3.2 GiB".
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// formatLatency renders milliseconds, or "-" when not measured (zero or less).
func formatLatency(ms float64) string {
	switch {
	case ms <= 0:
		return empty
	case ms < 1:
		return fmt.Sprintf("%.2fms", ms)
	default:
		return fmt.Sprintf("%.1fms", ms)
	}
}

// formatAge renders how long before now t was ("12s ago"), or "-" when t is nil.
func formatAge(t *time.Time, now time.Time) string {
	if t == nil {
		return empty
	}
	return formatDuration(now.Sub(*t)) + " ago"
}

// formatDuration renders d in whole seconds with at most two units: "12s", "3m4s", "5h6m", "2d3h".
// Negative durations (clock skew) show as "0s".
func formatDuration(d time.Duration) string {
	s := int64(max(d, 0) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
	}
}

// formatProxyStatus renders the proxy settings and counters on one line, e.g.
// "kcp, input allow; flows 2 active, 9 opened, 1 refused, 0 reset; kcp tx 1.5 MiB, rx 3.0 MiB, 4 retransmits".
func formatProxyStatus(p ProxyStatus) string {
	mode, input := cmp.Or(p.Mode, empty), cmp.Or(p.Input, empty)
	return fmt.Sprintf("%s, input %s; flows %d active, %d opened, %d refused, %d reset; kcp tx %s, rx %s, %d retransmits",
		mode, input, p.FlowsActive, p.FlowsOpened, p.FlowsRefused, p.FlowsReset,
		formatBytes(p.KCPBytesTx), formatBytes(p.KCPBytesRx), p.KCPRetransmits)
}

// formatDrops renders drop counters as sorted "reason=count" strings.
func formatDrops(drops map[string]uint64) []string {
	out := make([]string, 0, len(drops))
	for reason, n := range drops {
		out = append(out, reason+"="+strconv.FormatUint(n, 10))
	}
	slices.Sort(out)
	return out
}
