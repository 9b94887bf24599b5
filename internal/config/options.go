package config

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"
)

// layer is one source of settings (defaults, the file, the environment or the flags): a Config plus
// the inputs that Resolve turns into Config fields.
type layer struct {
	Config
	ConfigFile        string // --config
	NetworkSecretFile string // --network-secret-file, read into NetworkSecret
}

// setting is one `weft up` option. The table in settings() is the single source of truth for flags,
// TOML keys, the environment and the docs.
type setting struct {
	flag       string // flag name without "--"
	key        string // TOML key: the flag name with '_' for '-'; dotted for a table ("kcp.window"); "" if none
	env        string // environment variable, "" if none
	typ        string // type shown in the docs
	help       string
	docDefault string // default shown in the docs when it is not a constant of Default()
	noArg      string // value of the flag given without "=value"
	excludes   string // flag of a setting that must not be given at the same level as this one
	secret     bool   // never shown in logs
	input      bool   // read into other fields, not itself a Config field
	relPath    bool   // a path that, given in the file, is relative to the file's directory

	bind  func(*layer) pflag.Value // the flag value bound to this setting's field in a layer
	field func(*layer) any         // pointer to the field, for TOML decoding
	copy  func(dst, src *layer)
	clear func(*layer)
}

// settings lists every `weft up` option in the order of `weft up --help`. To add one: add the Config
// field, its default in Default(), a line here, and its check in Validate. A setting in a TOML table
// gets a dotted key with withKey, e.g. withKey("kcp.window") for --kcp-window.
func settings() []setting {
	return []setting{
		scalar(stringCodec(), "config", "read settings from this TOML `FILE`; flags given on the command line override it",
			func(l *layer) *string { return &l.ConfigFile }).cliOnly(),
		scalar(stringCodec(), "hostname", "this node's `NAME` in the mesh",
			func(l *layer) *string { return &l.Hostname }).withDefault("(machine hostname)"),
		scalar(stringCodec(), "network-name", "`NAME` of the mesh, the same on every node",
			func(l *layer) *string { return &l.NetworkName }).withDefault("(required)"),
		scalar(stringCodec(), "network-secret", "shared `SECRET` of the mesh; prefer the environment or --network-secret-file, as flags show in ps",
			func(l *layer) *string { return &l.NetworkSecret }).withDefault("(required; optional with --ca)").withEnv(EnvNetworkSecret).
			excluding("network-secret-file").hidden(),
		scalar(stringCodec(), "network-secret-file", "read the network secret from this `FILE` (one trailing newline is ignored)",
			func(l *layer) *string { return &l.NetworkSecretFile }).excluding("network-secret").asInput().fileRelative(),
		scalar(stringCodec(), "ca", "certificate mode: the network CA's certificate `FILE` (ca.crt of weft cert ca); peers are accepted only with a certificate it signed; needs --cert and --cert-key",
			func(l *layer) *string { return &l.CA }).fileRelative(),
		scalar(stringCodec(), "cert", "certificate mode: this node's certificate `FILE` (node.crt of weft cert sign); --ipv4 defaults to its address, --hostname to its name",
			func(l *layer) *string { return &l.Cert }).fileRelative(),
		scalar(stringCodec(), "cert-key", "certificate mode: this node's key `FILE` (node.key of weft cert sign), used instead of the identity in --state-dir",
			func(l *layer) *string { return &l.CertKey }).fileRelative(),
		scalar(prefixCodec("ADDR/PREFIX", "10.144.144.1/24"), "ipv4", "this node's virtual IPv4 address and mesh prefix, e.g. 10.144.144.1/24",
			func(l *layer) *netip.Prefix { return &l.IPv4 }).withDefault("(required)"),
		scalar(stringCodec(), "dev", "`NAME` of the TUN interface",
			func(l *layer) *string { return &l.Dev }),
		scalar(intCodec(), "mtu", fmt.Sprintf("MTU of the TUN interface (%d..%d)", MinMTU, MaxMTU),
			func(l *layer) *int { return &l.MTU }),
		list(uriCodec(), "listen", "accept peers on this udp:// or tcp:// address",
			func(l *layer) *[]URI { return &l.Listen }),
		list(uriCodec(), "peer", "connect to a peer at this udp:// or tcp:// address (host may be a DNS name)",
			func(l *layer) *[]URI { return &l.Peer }),
		scalar(boolCodec(), "no-punch", "do not try to reach nodes behind NATs directly (hole punching); traffic to nodes without a direct session stays relayed",
			func(l *layer) *bool { return &l.NoPunch }),
		scalar(stringCodec(), "control", "unix socket `PATH` of the local API used by weft status/peers/routes",
			func(l *layer) *string { return &l.Control }).withDefault(defaultControl("<dev>")),
		scalar(stringCodec(), "state-dir", "`DIR` for persistent state such as the node identity",
			func(l *layer) *string { return &l.StateDir }).withDefault(defaultStateDir("<dev>")),
		scalar(stringCodec(), "log-level", "`LEVEL` of logs: debug, info, warn or error",
			func(l *layer) *string { return &l.LogLevel }),
		scalar(stringCodec(), "metrics-listen", "serve Prometheus metrics on this host:port `ADDR`, e.g. 127.0.0.1:9100",
			func(l *layer) *string { return &l.MetricsListen }).withDefault("(off)"),
		scalar(boolCodec(), "debug-pprof", "serve Go's pprof profiles on the control socket under /debug/pprof/ (off: profiles cost CPU and /debug/pprof/cmdline shows the command line)",
			func(l *layer) *bool { return &l.DebugPprof }),
		list(prefixCodec("CIDR", "192.168.50.0/24"), "subnet", "expose this IPv4 LAN to the mesh, e.g. 192.168.50.0/24",
			func(l *layer) *[]netip.Prefix { return &l.Subnet }),
		scalar(boolCodec(), "subnet-snat", "masquerade mesh traffic leaving into the exposed LANs",
			func(l *layer) *bool { return &l.SubnetSNAT }),
		list(acceptCodec(), "accept-subnets", "install other nodes' subnets (and virtual IPs outside the mesh prefix) that fall inside this network, or all; loopback, link-local, multicast and default routes only when listed exactly",
			func(l *layer) *[]AcceptSubnet { return &l.AcceptSubnets }),
		scalar(boolCodec(), "kernel-forward-only", "announce this node's subnets with proxy: deny, so only the kernel forwards them",
			func(l *layer) *bool { return &l.KernelForwardOnly }),
		scalar(stringCodec(), "tcp-proxy", "`MODE` for this node's outgoing TCP flows to other nodes: off (plain tunnel) or kcp (carried over KCP where the destination allows it and the path is UDP)",
			func(l *layer) *string { return &l.TCPProxy }),
		scalar(boolCodec(), "no-proxy-input", "announce every prefix of this node with proxy: deny, so no node proxies flows to it",
			func(l *layer) *bool { return &l.NoProxyInput }),
		scalar(intCodec(), "kcp-interval-ms", "KCP ACK delay and timer clock of the proxy's conversations in milliseconds (10..100)",
			func(l *layer) *int { return &l.KCP.IntervalMS }).withKey("kcp.interval_ms"),
		scalar(intCodec(), "kcp-window", "KCP send and receive window of each proxied flow, in segments (32..16384); also the in-flight budget the flows with one peer share",
			func(l *layer) *int { return &l.KCP.Window }).withKey("kcp.window"),
		scalar(intCodec(), "kcp-resend", "KCP fast retransmit after this many duplicate ACKs (0 turns it off)",
			func(l *layer) *int { return &l.KCP.Resend }).withKey("kcp.resend"),
	}
}

// withDefault sets the default shown in the docs when Default() cannot show it; a text in parentheses,
// such as "(required)", is a remark rather than a value.
func (s setting) withDefault(text string) setting { s.docDefault = text; return s }

// withEnv makes the setting readable from an environment variable.
func (s setting) withEnv(name string) setting { s.env = name; return s }

// withKey sets a TOML key other than the flag name, e.g. a dotted key of a table.
func (s setting) withKey(key string) setting { s.key = key; return s }

// excluding forbids giving this setting and the named one at the same level; the higher level's
// choice clears the other's.
func (s setting) excluding(flag string) setting { s.excludes = flag; return s }

// hidden keeps the value out of logs.
func (s setting) hidden() setting { s.secret = true; return s }

// asInput marks a setting that Resolve reads into other fields.
func (s setting) asInput() setting { s.input = true; return s }

// fileRelative marks a string path that, when relative in the TOML file, is relative to the file.
func (s setting) fileRelative() setting { s.relPath = true; return s }

// cliOnly marks a command-line flag that has no TOML key.
func (s setting) cliOnly() setting { s.key = ""; s.input = true; return s }

// defaultText is the default shown in --help and the docs.
func (s setting) defaultText() string {
	if s.docDefault != "" {
		return s.docDefault
	}
	l := layer{Config: Default()}
	return s.bind(&l).String()
}

// Option documents one `weft up` setting.
type Option struct {
	Flag    string // flag name with the dashes, e.g. "--mtu"
	Key     string // TOML key, e.g. "mtu"; "" for --config, which cannot be set in the file
	Type    string // e.g. "int", "URI (repeatable)"
	Default string // e.g. "1400", "(required)", "" for empty
	Help    string
}

// Options lists every setting of `weft up` from the table RegisterFlags uses.
func Options() []Option {
	all := settings()
	opts := make([]Option, len(all))
	for i, s := range all {
		help := strings.ReplaceAll(s.help, "`", "")
		if s.env != "" {
			help += "; also $" + s.env
		}
		opts[i] = Option{Flag: "--" + s.flag, Key: s.key, Type: s.typ, Default: s.defaultText(), Help: help}
	}
	return opts
}

// MarkdownTable renders Options as a Markdown table: | flag | TOML key | type | default | meaning |.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| flag | TOML key | type | default | meaning |\n")
	b.WriteString("| --- | --- | --- | --- | --- |\n")
	for _, o := range Options() {
		key := "(command line only)"
		if o.Key != "" {
			key = "`" + o.Key + "`"
		}
		def := o.Default
		if def != "" && !strings.HasPrefix(def, "(") {
			def = "`" + o.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n",
			o.Flag, key, cell(o.Type), cell(def), cell(o.Help))
	}
	return b.String()
}

// cell escapes a table cell.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}
