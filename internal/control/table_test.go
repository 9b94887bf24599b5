package control

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTablesGolden(t *testing.T) {
	tests := []struct {
		golden string
		write  func(*bytes.Buffer) error
	}{
		{"status.txt", func(b *bytes.Buffer) error { return WriteStatus(b, sampleStatus()) }},
		{"peers.txt", func(b *bytes.Buffer) error { return WritePeers(b, samplePeers(), sampleNow) }},
		{"routes.txt", func(b *bytes.Buffer) error { return WriteRoutes(b, sampleRoutes()) }},
		{"proxy.txt", func(b *bytes.Buffer) error { return WriteProxy(b, sampleProxy()) }},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.write(&buf); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.golden, buf.Bytes())
		})
	}
}

// column returns the text of the column named header in every data row of an aligned table.
func column(t *testing.T, table, header string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	start := strings.Index(lines[0], header)
	if start < 0 {
		t.Fatalf("no column %s in header %q", header, lines[0])
	}
	var out []string
	for _, l := range lines[1:] {
		out = append(out, strings.Fields(l[start:])[0])
	}
	return out
}

func TestTableOrderAndAlignment(t *testing.T) {
	var peers, routes, proxy bytes.Buffer
	if err := WritePeers(&peers, samplePeers(), sampleNow); err != nil {
		t.Fatal(err)
	}
	if err := WriteRoutes(&routes, sampleRoutes()); err != nil {
		t.Fatal(err)
	}
	if err := WriteProxy(&proxy, sampleProxy()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		table  string
		header string
		want   []string
	}{
		{"peers by ipv4 numerically", peers.String(), "IPV4", []string{"10.144.144.2", "10.144.144.3", "10.144.144.10"}},
		{"peers handshake age", peers.String(), "LAST_HANDSHAKE", []string{"12s", "2m5s", "-"}},
		{"peers empty endpoint", peers.String(), "ENDPOINT", []string{"203.0.113.7:11010", "198.51.100.20:443", "-"}},
		{"routes by prefix", routes.String(), "PREFIX", []string{"10.0.0.0/8", "10.144.144.2/32", "10.144.144.10/32", "192.168.1.0/24"}},
		{"routes proxy", routes.String(), "PROXY", []string{"allow", "allow", "allow", "deny"}},
		{"proxy by src numerically", proxy.String(), "SRC", []string{"10.144.144.1:9000", "10.144.144.1:40312", "10.144.144.2:33000", "10.144.144.10:51000"}},
		{"proxy age", proxy.String(), "AGE", []string{"0s", "1m35s", "3s", "2h1m"}},
		{"proxy side", proxy.String(), "SIDE", []string{"source", "source", "destination", "destination"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := column(t, tt.table, tt.header)
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("column %s = %q, want %q", tt.header, got, tt.want)
			}
		})
	}
}

func TestWritePeersKeepsCallerOrder(t *testing.T) {
	ps := samplePeers()
	first := ps[0].IPv4
	if err := WritePeers(&bytes.Buffer{}, ps, sampleNow); err != nil {
		t.Fatal(err)
	}
	if ps[0].IPv4 != first {
		t.Errorf("WritePeers reordered the caller's slice: first is %s, was %s", ps[0].IPv4, first)
	}
}

func TestWriteProxyOrder(t *testing.T) {
	fs := []ProxyFlow{
		{Src: "not-an-addr", Dst: "b"},
		{Src: "10.144.144.1:5000", Dst: "10.144.144.3:80"},
		{Src: "10.144.144.1:5000", Dst: "10.144.144.2:80"},
		{Src: "", Dst: "a"},
	}
	first := fs[0].Src
	var buf bytes.Buffer
	if err := WriteProxy(&buf, fs); err != nil {
		t.Fatal(err)
	}
	if fs[0].Src != first {
		t.Errorf("WriteProxy reordered the caller's slice: first is %s, was %s", fs[0].Src, first)
	}
	if got, want := column(t, buf.String(), "DST"), []string{"10.144.144.2:80", "10.144.144.3:80", "a", "b"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("column DST = %q, want %q (by src, then dst; unparsable last)", got, want)
	}
}

func TestEmptyTablesHaveHeaders(t *testing.T) {
	tests := []struct {
		name  string
		write func(*bytes.Buffer) error
		want  string
	}{
		{"peers", func(b *bytes.Buffer) error { return WritePeers(b, nil, sampleNow) }, "HOSTNAME  NODE_ID  IPV4  TUNNEL  ENDPOINT  NEXT_HOP  LATENCY  RX  TX  LAST_HANDSHAKE  PATH  PUNCH  TO_DIRECT  CANDIDATES\n"},
		{"routes", func(b *bytes.Buffer) error { return WriteRoutes(b, nil) }, "PREFIX  HOSTNAME  NODE_ID  NEXT_HOP  HOPS  COST  PROXY\n"},
		{"proxy", func(b *bytes.Buffer) error { return WriteProxy(b, nil) }, "SRC  DST  SIDE  TRANSPORT  STATE  UP  DOWN  AGE  PEER\n"},
		{"status", func(b *bytes.Buffer) error { return WriteStatus(b, Status{}) }, "warnings:   -\ndrops:      -\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.write(&buf); err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(buf.String(), tt.want) {
				t.Errorf("got\n%s\nwant it to end with\n%s", buf.String(), tt.want)
			}
		})
	}
}

func TestTableCellsAreSanitized(t *testing.T) {
	var buf bytes.Buffer
	ps := []Peer{{Hostname: "evil\x1b[2J\tname\nx", IPv4: "10.144.144.9"}}
	if err := WritePeers(&buf, ps, sampleNow); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.ContainsAny(out, "\x1b\t") || strings.Count(out, "\n") != 2 {
		t.Errorf("hostile hostname reached the terminal unescaped: %q", out)
	}
	if !strings.Contains(out, "evil?[2J?name?x") {
		t.Errorf("hostname not shown with '?' replacements: %q", out)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestTableWriteErrors(t *testing.T) {
	tests := []struct {
		name  string
		write func() error
	}{
		{"status", func() error { return WriteStatus(failingWriter{}, sampleStatus()) }},
		{"peers", func() error { return WritePeers(failingWriter{}, samplePeers(), sampleNow) }},
		{"routes", func() error { return WriteRoutes(failingWriter{}, sampleRoutes()) }},
		{"proxy", func() error { return WriteProxy(failingWriter{}, sampleProxy()) }},
		{"json", func() error { return WriteJSON(failingWriter{}, sampleStatus()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.write(); err == nil || !strings.Contains(err.Error(), "disk full") {
				t.Errorf("error = %v, want the writer's error", err)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{5 << 20, "5.0 MiB"},
		{4 << 30, "4.0 GiB"},
		{3 << 40, "3.0 TiB"},
		{1 << 63, "8.0 EiB"},
	}
	for _, tt := range tests {
		if got := formatBytes(tt.n); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-5 * time.Second, "0s"},
		{0, "0s"},
		{12*time.Second + 900*time.Millisecond, "12s"},
		{125 * time.Second, "2m5s"},
		{3*time.Hour + 4*time.Minute + 5*time.Second, "3h4m"},
		{50 * time.Hour, "2d2h"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestFormatLatency(t *testing.T) {
	tests := []struct {
		ms   float64
		want string
	}{
		{0, "-"},
		{-1, "-"},
		{0.423, "0.42ms"},
		{12.54, "12.5ms"},
	}
	for _, tt := range tests {
		if got := formatLatency(tt.ms); got != tt.want {
			t.Errorf("formatLatency(%v) = %q, want %q", tt.ms, got, tt.want)
		}
	}
}
