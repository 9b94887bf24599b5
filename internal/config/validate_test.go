package config

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

// validConfig is Default() with the required settings filled in.
func validConfig() Config {
	c := Default()
	c.Hostname = "node1"
	c.NetworkName = "home"
	c.NetworkSecret = "s3cret-value"
	c.IPv4 = netip.MustParsePrefix("10.144.144.1/24")
	return c
}

func TestDefault(t *testing.T) {
	c := Default()
	host, _ := os.Hostname()
	checks := []struct {
		name      string
		got, want any
	}{
		{"Hostname", c.Hostname, host},
		{"Dev", c.Dev, "weft0"},
		{"MTU", c.MTU, 1400},
		{"Listen", slices.Clone(c.Listen), []URI{{"udp", "0.0.0.0", 11010}}},
		{"Peer", len(c.Peer), 0},
		{"Control", c.Control, "/run/weft/weft0.sock"},
		{"StateDir", c.StateDir, "/var/lib/weft/weft0"},
		{"LogLevel", c.LogLevel, "info"},
		{"MetricsListen", c.MetricsListen, ""},
		{"Subnet", len(c.Subnet), 0},
		{"SubnetSNAT", c.SubnetSNAT, true},
		{"KernelForwardOnly", c.KernelForwardOnly, false},
		{"NetworkName", c.NetworkName, ""},
		{"NetworkSecret", c.NetworkSecret, ""},
		{"IPv4 valid", c.IPv4.IsValid(), false},
	}
	for _, tt := range checks {
		if !equal(tt.got, tt.want) {
			t.Errorf("Default().%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if err := validConfig().Validate(); err != nil {
		t.Errorf("defaults plus required settings: Validate() = %v, want nil", err)
	}
}

func equal(a, b any) bool {
	if as, ok := a.([]URI); ok {
		return slices.Equal(as, b.([]URI))
	}
	return a == b
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string // substrings of the error; nil for a valid config
	}{
		{"valid", func(c *Config) {}, nil},
		{"valid /30 host", func(c *Config) { c.IPv4 = netip.MustParsePrefix("10.0.0.2/30") }, nil},
		{"valid peers only", func(c *Config) { c.Listen = nil; c.Peer = []URI{{"tcp", "hub.example.net", 1}} }, nil},
		{"valid subnet", func(c *Config) { c.Subnet = []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")} }, nil},
		{"valid metrics", func(c *Config) { c.MetricsListen = ":9100" }, nil},
		{"hostname empty", func(c *Config) { c.Hostname = "" }, []string{"--hostname is empty"}},
		{"hostname space", func(c *Config) { c.Hostname = "my node" }, []string{`--hostname "my node": must not contain spaces`}},
		{"network name", func(c *Config) { c.NetworkName = "" }, []string{"--network-name is required"}},
		{"secret", func(c *Config) { c.NetworkSecret = "" }, []string{"--network-secret is required: pass --network-secret, set WEFT_NETWORK_SECRET or use --network-secret-file"}},
		{"ipv4 missing", func(c *Config) { c.IPv4 = netip.Prefix{} }, []string{"--ipv4 is required: give this node's virtual address, e.g. --ipv4 10.144.144.1/24"}},
		{"ipv4 is v6", func(c *Config) { c.IPv4 = netip.MustParsePrefix("fd00::1/64") }, []string{"--ipv4 fd00::1/64: must be an IPv4 address"}},
		{"ipv4 4in6", func(c *Config) { c.IPv4 = netip.MustParsePrefix("::ffff:10.0.0.1/120") }, []string{"must be an IPv4 address"}},
		{"ipv4 /31", func(c *Config) { c.IPv4 = netip.MustParsePrefix("10.0.0.1/31") }, []string{"--ipv4 10.0.0.1/31: prefix length /31 must be between /8 and /30"}},
		{"ipv4 /7", func(c *Config) { c.IPv4 = netip.MustParsePrefix("10.0.0.1/7") }, []string{"prefix length /7"}},
		{"ipv4 network", func(c *Config) { c.IPv4 = netip.MustParsePrefix("10.144.144.0/24") }, []string{"network address of 10.144.144.0/24: use a host address such as 10.144.144.1/24"}},
		{"ipv4 broadcast", func(c *Config) { c.IPv4 = netip.MustParsePrefix("10.144.144.255/24") }, []string{"--ipv4 10.144.144.255/24: 10.144.144.255 is the broadcast address"}},
		{"ipv4 broadcast /20", func(c *Config) { c.IPv4 = netip.MustParsePrefix("10.1.15.255/20") }, []string{"broadcast address of 10.1.0.0/20"}},
		{"dev empty", func(c *Config) { c.Dev = "" }, []string{"--dev is empty"}},
		{"dev long", func(c *Config) { c.Dev = "weft-very-long-0" }, []string{`--dev "weft-very-long-0": interface names are at most 15`}},
		{"dev slash", func(c *Config) { c.Dev = "we/ft" }, []string{`--dev "we/ft": must not contain`}},
		{"dev colon", func(c *Config) { c.Dev = "weft:0" }, []string{"must not contain '/', ':' or whitespace"}},
		{"dev space", func(c *Config) { c.Dev = "weft 0" }, []string{"must not contain"}},
		{"dev dot", func(c *Config) { c.Dev = ".." }, []string{`--dev "..": not a valid interface name`}},
		{"mtu high", func(c *Config) { c.MTU = 70000 }, []string{"--mtu 70000: must be between 576 and 9000"}},
		{"mtu low", func(c *Config) { c.MTU = 575 }, []string{"--mtu 575: must be between 576 and 9000"}},
		{"listen name", func(c *Config) { c.Listen = []URI{{"udp", "example.net", 1}} }, []string{"--listen udp://example.net:1: listen on an IP address"}},
		{"listen twice", func(c *Config) { c.Listen = append(c.Listen, c.Listen[0]) }, []string{"--listen udp://0.0.0.0:11010 is given twice"}},
		{"listen bad scheme", func(c *Config) { c.Listen = []URI{{"quic", "0.0.0.0", 1}} }, []string{`--listen quic://0.0.0.0:1: scheme "quic": use udp or tcp`}},
		{"peer port 0", func(c *Config) { c.Peer = []URI{{"udp", "1.2.3.4", 0}} }, []string{"--peer udp://1.2.3.4:0: port 0 is not allowed"}},
		{"nothing to connect", func(c *Config) { c.Listen = nil }, []string{"--listen and --peer are both empty"}},
		{"control empty", func(c *Config) { c.Control = "" }, []string{"--control is empty"}},
		{"control long", func(c *Config) { c.Control = "/" + strings.Repeat("x", 107) }, []string{"unix socket paths are limited to 107 bytes"}},
		{"state dir empty", func(c *Config) { c.StateDir = "" }, []string{"--state-dir is empty"}},
		{"log level", func(c *Config) { c.LogLevel = "verbose" }, []string{`--log-level "verbose": must be one of debug, info, warn, error`}},
		{"metrics no port", func(c *Config) { c.MetricsListen = "127.0.0.1" }, []string{`--metrics-listen "127.0.0.1": want host:port`}},
		{"metrics bad port", func(c *Config) { c.MetricsListen = "127.0.0.1:99999" }, []string{`--metrics-listen "127.0.0.1:99999": port "99999"`}},
		{"subnet v6", func(c *Config) { c.Subnet = []netip.Prefix{netip.MustParsePrefix("fd00::/64")} }, []string{"--subnet fd00::/64: must be an IPv4 network"}},
		{"subnet unmasked", func(c *Config) { c.Subnet = []netip.Prefix{netip.MustParsePrefix("192.168.50.1/24")} }, []string{"--subnet 192.168.50.1/24: not a network address: use 192.168.50.0/24"}},
		{"subnet overlaps", func(c *Config) { c.Subnet = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }, []string{"--subnet 10.0.0.0/8: overlaps the mesh network 10.144.144.0/24"}},
		{"subnet inside", func(c *Config) { c.Subnet = []netip.Prefix{netip.MustParsePrefix("10.144.144.128/25")} }, []string{"overlaps the mesh network"}},
		{"subnet twice", func(c *Config) {
			c.Subnet = []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("192.168.1.0/24")}
		}, []string{"--subnet 192.168.1.0/24 is given twice"}},
		{"several at once", func(c *Config) { c.MTU = 1; c.Dev = ""; c.NetworkName = "" }, []string{"--mtu 1", "--dev is empty", "--network-name is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.modify(&c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q\nwant it to contain %q", err, w)
				}
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tt.want) {
				t.Errorf("Validate() gave %d errors, want %d: %q", n, len(tt.want), err)
			}
			if strings.Contains(err.Error(), c.NetworkSecret) && c.NetworkSecret != "" {
				t.Errorf("Validate() error shows the secret: %q", err)
			}
		})
	}
}

func TestSlogLevel(t *testing.T) {
	for level, want := range map[string]string{"debug": "DEBUG", "info": "INFO", "warn": "WARN", "error": "ERROR"} {
		c := Config{LogLevel: level}
		if got := c.SlogLevel().String(); got != want {
			t.Errorf("SlogLevel() for %q = %s, want %s", level, got, want)
		}
	}
}
