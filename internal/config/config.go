package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/weft-vpn/weft/internal/proxy"
)

// Limits and defaults of the settings.
const (
	DefaultDev      = "weft0"
	DefaultMTU      = 1400
	DefaultLogLevel = "info"
	MinMTU          = 576
	MaxMTU          = 9000
	// EnvNetworkSecret is the environment variable read for --network-secret.
	EnvNetworkSecret = "WEFT_NETWORK_SECRET"
)

// Config is the resolved configuration of `weft up`. Field comments name the flag; see Options for the
// defaults and help text.
//
// NetworkSecret is a credential: Config's LogValue hides it, and no error of this package prints it.
type Config struct {
	Hostname      string // --hostname: this node's name in the mesh
	NetworkName   string // --network-name: shared by every node of the mesh
	NetworkSecret string // --network-secret, $WEFT_NETWORK_SECRET or --network-secret-file

	// Certificate mode (all three or none): the network CA's certificate, this node's certificate and
	// its key. Without --network-secret the network key derives from the CA's key.
	CA      string // --ca
	Cert    string // --cert
	CertKey string // --cert-key

	IPv4 netip.Prefix // --ipv4: this node's virtual address with the mesh prefix length, e.g. 10.144.144.1/24

	Dev string // --dev: TUN interface name
	MTU int    // --mtu: TUN MTU

	Listen []URI // --listen: local underlay listeners
	Peer   []URI // --peer: peers to dial; hosts may be DNS names
	// NoPunch turns NAT traversal off (--no-punch): nodes reached through relays stay relayed.
	NoPunch bool

	Control       string // --control: unix socket of the local API
	StateDir      string // --state-dir: persistent state (node identity)
	LogLevel      string // --log-level: debug, info, warn or error
	MetricsListen string // --metrics-listen: host:port of the Prometheus endpoint, "" for off

	Subnet            []netip.Prefix // --subnet: LANs this node exposes to the mesh
	SubnetSNAT        bool           // --subnet-snat: masquerade mesh traffic into the exposed LANs
	KernelForwardOnly bool           // --kernel-forward-only: announce Subnet with proxy: deny
	AcceptSubnets     []AcceptSubnet // --accept-subnets: which prefixes of other nodes go into the kernel
	DebugPprof        bool           // --debug-pprof: serve net/http/pprof on the control socket

	TCPProxy     string    // --tcp-proxy: "off" or "kcp" (carry this node's outgoing TCP flows over KCP)
	NoProxyInput bool      // --no-proxy-input: announce every prefix of this node with proxy: deny
	KCP          KCPConfig // [kcp] table: tuning of the KCP sessions of the proxy
}

// KCPConfig tunes the KCP conversations that carry proxied TCP flows ([kcp] in the TOML file). The
// defaults are internal/proxy's (the one place they live): no KCP congestion control, a 10 ms ACK delay
// and a window of 2048 segments per flow (about 2.8 MB in flight, ~550 Mbit/s at 40 ms of RTT), which
// the flows with one peer also share as their common in-flight budget.
type KCPConfig struct {
	IntervalMS int // --kcp-interval-ms (kcp.interval_ms): KCP's internal clock in milliseconds
	Window     int // --kcp-window (kcp.window): per-flow send and receive window in segments
	Resend     int // --kcp-resend (kcp.resend): fast-retransmit after this many duplicate ACKs (0 = off)
}

// Default returns every default in one place. Hostname is the machine's hostname ("" if it cannot be
// read); Control and StateDir are derived from DefaultDev. Resolve derives them from the final Dev
// instead when they are not given.
func Default() Config {
	hostname, err := os.Hostname()
	if err != nil {
		hostname = ""
	}
	return Config{
		Hostname:   hostname,
		Dev:        DefaultDev,
		MTU:        DefaultMTU,
		Listen:     []URI{{Scheme: "udp", Host: "0.0.0.0", Port: 11010}},
		Control:    defaultControl(DefaultDev),
		StateDir:   defaultStateDir(DefaultDev),
		LogLevel:   DefaultLogLevel,
		SubnetSNAT: true,
		AcceptSubnets: []AcceptSubnet{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}, {Prefix: netip.MustParsePrefix("172.16.0.0/12")},
			{Prefix: netip.MustParsePrefix("192.168.0.0/16")}, {Prefix: netip.MustParsePrefix("100.64.0.0/10")}},
		TCPProxy: "off",
		KCP: KCPConfig{IntervalMS: int(proxy.DefaultInterval / time.Millisecond), Window: proxy.DefaultWindow,
			Resend: proxy.DefaultResend},
	}
}

// defaultControl is the control socket path of a device: /run/weft/<dev>.sock.
func defaultControl(dev string) string {
	return filepath.Join("/run/weft", dev+".sock")
}

// defaultStateDir is the state directory of a device: /var/lib/weft/<dev>.
func defaultStateDir(dev string) string {
	return filepath.Join("/var/lib/weft", dev)
}

// SlogLevel returns LogLevel as a slog.Level; an unknown level (which Validate rejects) is Info.
func (c Config) SlogLevel() slog.Level {
	switch c.LogLevel {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// LogValue implements slog.LogValuer: every setting under its TOML key, with the network secret
// hidden.
func (c Config) LogValue() slog.Value {
	l := layer{Config: c}
	var attrs []slog.Attr
	for _, s := range settings() {
		if s.input {
			continue
		}
		text := s.bind(&l).String()
		if s.secret && text != "" {
			text = "(hidden)"
		}
		attrs = append(attrs, slog.String(s.key, text))
	}
	return slog.GroupValue(attrs...)
}

// AcceptSubnet is one --accept-subnets entry: an IPv4 network inside which other nodes' subnets (and
// virtual IPs outside this node's mesh prefix) are installed in the kernel, or All for every prefix.
type AcceptSubnet struct {
	All    bool
	Prefix netip.Prefix
}

// String is "all" or the network.
func (a AcceptSubnet) String() string {
	if a.All {
		return "all"
	}
	return a.Prefix.String()
}

// MarshalText implements encoding.TextMarshaler.
func (a AcceptSubnet) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: "all" or an IPv4 network.
func (a *AcceptSubnet) UnmarshalText(text []byte) error {
	v, err := parseAcceptSubnet(string(text))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

func parseAcceptSubnet(s string) (AcceptSubnet, error) {
	if s == "all" {
		return AcceptSubnet{All: true}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return AcceptSubnet{}, fmt.Errorf("want all or an IPv4 network, e.g. 192.168.0.0/16")
	}
	return AcceptSubnet{Prefix: p}, nil
}

// specialRanges are never accepted from another node unless listed exactly: a route there would
// capture this node's own loopback, link-local (cloud metadata at 169.254.169.254), multicast or all
// traffic.
var specialRanges = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"), netip.MustParsePrefix("0.0.0.0/8"),
}

// Accepts reports whether another node's prefix p may be installed in this node's kernel: it is
// listed exactly, or it lies inside a listed network (or all is listed) and touches none of the
// special ranges and is not a default route.
func (c Config) Accepts(p netip.Prefix) bool {
	special := p.Bits() == 0
	for _, r := range specialRanges {
		special = special || p.Overlaps(r)
	}
	for _, a := range c.AcceptSubnets {
		switch {
		case !a.All && a.Prefix == p:
			return true
		case special:
		case a.All:
			return true
		case a.Prefix.Bits() <= p.Bits() && a.Prefix.Contains(p.Addr()):
			return true
		}
	}
	return false
}
