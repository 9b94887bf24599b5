package control

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// sampleNow is the fixed "current time" of the golden tables.
var sampleNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func sampleStatus() Status {
	return Status{
		Hostname:    "alpha",
		NodeID:      "3f9a0c1d2e4b5a69",
		IPv4:        "10.144.144.1/24",
		NetworkName: "home",
		Dev:         "weft0",
		MTU:         1380,
		Listeners:   []string{"udp://0.0.0.0:11010", "tcp://0.0.0.0:11010"},
		Version:     "v0.1.0",
		Warnings:    []string{"duplicate virtual IP 10.144.144.3 announced by 7c1e2d3f4a5b6c7d and 0a1b2c3d4e5f6071"},
		Drops:       map[string]uint64{"replay": 2, "decrypt": 17, "no_route": 0},
		UptimeS:     3725.5,
		Proxy: ProxyStatus{Mode: "kcp", Input: "allow", FlowsActive: 4, FlowsOpened: 1289, FlowsRefused: 3,
			FlowsReset: 17, KCPBytesTx: 734003200, KCPBytesRx: 52428800, KCPRetransmits: 211,
			KCPConversations: 5, KCPConversationsRefused: 0},
		NAT:       "cone",
		Endpoints: []string{"192.168.1.20:11010", "198.51.100.7:40123"},
		Punch:     true,
	}
}

func samplePeers() []Peer {
	hs := sampleNow.Add(-12 * time.Second)
	old := sampleNow.Add(-(2*time.Minute + 5*time.Second))
	// Deliberately out of order: .10 must sort after .3 (numeric, not textual).
	return []Peer{
		{Hostname: "delta", NodeID: "0a1b2c3d4e5f6071", IPv4: "10.144.144.10", Direct: false,
			NextHop: "10.144.144.2", Tunnel: "relay", LatencyMS: 41.25, RxBytes: 0, TxBytes: 1536,
			Path: "relayed", Candidates: []string{"10.0.7.2:11010", "203.0.113.99:51820"}, PunchAttempts: 6, PunchFailures: 6},
		{Hostname: "beta", NodeID: "7c1e2d3f4a5b6c7d", IPv4: "10.144.144.2", Direct: true,
			Endpoint: "203.0.113.7:11010", NextHop: "10.144.144.2", Tunnel: "udp", LatencyMS: 0.42,
			RxBytes: 123456789, TxBytes: 987654, LastHandshake: &hs,
			Path: "direct", Candidates: []string{"203.0.113.7:11010"}, PunchAttempts: 1, TimeToDirectMS: 412.5},
		{Hostname: "gamma", NodeID: "5d6e7f8091a2b3c4", IPv4: "10.144.144.3", Direct: true,
			Endpoint: "198.51.100.20:443", NextHop: "10.144.144.3", Tunnel: "tcp", LatencyMS: 12.5,
			RxBytes: 512, TxBytes: 4 << 30, LastHandshake: &old, Path: "direct", Candidates: []string{}},
	}
}

func sampleRoutes() []Route {
	return []Route{
		{Prefix: "192.168.1.0/24", NodeID: "7c1e2d3f4a5b6c7d", Hostname: "beta", NextHop: "10.144.144.2", Hops: 1, Cost: 0.42, Proxy: "deny"},
		{Prefix: "10.144.144.10/32", NodeID: "0a1b2c3d4e5f6071", Hostname: "delta", NextHop: "10.144.144.2", Hops: 2, Cost: 41.25, Proxy: "allow"},
		{Prefix: "10.144.144.2/32", NodeID: "7c1e2d3f4a5b6c7d", Hostname: "beta", NextHop: "10.144.144.2", Hops: 1, Cost: 0.42, Proxy: "allow"},
		{Prefix: "10.0.0.0/8", NodeID: "5d6e7f8091a2b3c4", Hostname: "gamma", NextHop: "10.144.144.3", Hops: 1, Cost: 12.5, Proxy: "allow"},
	}
}

func sampleProxy() []ProxyFlow {
	// Deliberately out of order: 10.144.144.10 must sort after 10.144.144.2 and port 9000 before 40312
	// (numeric, not textual).
	return []ProxyFlow{
		{Src: "10.144.144.10:51000", Dst: "10.144.144.1:22", Side: "destination", Transport: "kcp",
			State: "established", BytesUp: 4096, BytesDown: 1 << 20, AgeS: 7260.2, Peer: "0a1b2c3d4e5f6071"},
		{Src: "10.144.144.1:40312", Dst: "192.168.1.10:443", Side: "source", Transport: "kcp",
			State: "half-closed", BytesUp: 734003200, BytesDown: 1234, AgeS: 95.7, Peer: "7c1e2d3f4a5b6c7d"},
		{Src: "10.144.144.1:9000", Dst: "10.0.3.4:6379", Side: "source", Transport: "kcp",
			State: "connecting", AgeS: 0.4, Peer: "5d6e7f8091a2b3c4"},
		{Src: "10.144.144.2:33000", Dst: "10.144.144.1:80", Side: "destination", Transport: "kcp",
			State: "closing", BytesUp: 512, BytesDown: 48000, AgeS: 3.9, Peer: "7c1e2d3f4a5b6c7d"},
	}
}

// golden compares got with testdata/name, or rewrites the file when -update is set.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatalf("update golden file: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run `go test -update` to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file (run `go test -update` if the change is intended)\n--- got:\n%s\n--- want:\n%s", name, got, want)
	}
}
