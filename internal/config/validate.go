package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"unicode"
)

// Limits checked by Validate.
const (
	minIPv4Bits   = 8
	maxIPv4Bits   = 30
	maxIfnameLen  = 15  // IFNAMSIZ - 1
	maxSocketPath = 107 // sizeof(sun_path) - 1
	maxHostname   = 253
)

// Validate returns every problem of c joined with errors.Join, nil if there is none. Each error names
// the flag (the TOML key is the same name with '_') and says how to fix it. Errors never contain the
// network secret.
func (c Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(c.checkHostname())
	if c.NetworkName == "" {
		add(errors.New("--network-name is required: give the name every node of this mesh shares, e.g. --network-name home"))
	}
	if c.NetworkSecret == "" && c.CA == "" {
		add(errors.New("--network-secret is required: pass --network-secret, set " + EnvNetworkSecret + " or use --network-secret-file " +
			"(or run in certificate mode with --ca, --cert and --cert-key)"))
	}
	add(c.checkCertFlags())
	add(checkIPv4(c.IPv4))
	add(checkDev(c.Dev))
	if c.MTU < MinMTU || c.MTU > MaxMTU {
		add(fmt.Errorf("--mtu %d: must be between %d and %d", c.MTU, MinMTU, MaxMTU))
	}
	errs = append(errs, c.checkURIs()...)
	add(checkPath("--control", c.Control, "/run/weft/weft0.sock"))
	if len(c.Control) > maxSocketPath {
		add(fmt.Errorf("--control %s: unix socket paths are limited to %d bytes: choose a shorter path", c.Control, maxSocketPath))
	}
	add(checkPath("--state-dir", c.StateDir, "/var/lib/weft/weft0"))
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add(fmt.Errorf("--log-level %q: must be one of debug, info, warn, error", c.LogLevel))
	}
	add(checkMetricsListen(c.MetricsListen))
	errs = append(errs, c.checkSubnets()...)
	switch c.TCPProxy {
	case "off", "kcp":
	default:
		add(fmt.Errorf("--tcp-proxy %q: must be off or kcp", c.TCPProxy))
	}
	if c.KCP.IntervalMS < 10 || c.KCP.IntervalMS > 100 {
		add(fmt.Errorf("--kcp-interval-ms %d: must be between 10 and 100", c.KCP.IntervalMS))
	}
	if c.KCP.Window < 32 || c.KCP.Window > 16384 {
		add(fmt.Errorf("--kcp-window %d: must be between 32 and 16384 segments", c.KCP.Window))
	}
	if c.KCP.Resend < 0 {
		add(fmt.Errorf("--kcp-resend %d: must be 0 (off) or more", c.KCP.Resend))
	}
	return errors.Join(errs...)
}

// checkCertFlags: certificate mode takes --ca, --cert and --cert-key together.
func (c Config) checkCertFlags() error {
	given := map[string]bool{"--ca": c.CA != "", "--cert": c.Cert != "", "--cert-key": c.CertKey != ""}
	var missing []string
	for _, f := range []string{"--ca", "--cert", "--cert-key"} {
		if !given[f] {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 || len(missing) == 3 {
		return nil
	}
	return fmt.Errorf("certificate mode needs --ca, --cert and --cert-key together: %s missing", strings.Join(missing, " and "))
}

func (c Config) checkHostname() error {
	switch {
	case c.Hostname == "":
		return errors.New("--hostname is empty: give this node's name, e.g. --hostname node1")
	case len(c.Hostname) > maxHostname:
		return fmt.Errorf("--hostname: %d characters is too long: use at most %d", len(c.Hostname), maxHostname)
	case strings.IndexFunc(c.Hostname, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("--hostname %q: must not contain spaces or control characters", c.Hostname)
	}
	return nil
}

func checkIPv4(p netip.Prefix) error {
	if !p.IsValid() {
		return errors.New("--ipv4 is required: give this node's virtual address, e.g. --ipv4 10.144.144.1/24")
	}
	addr := p.Addr()
	if !addr.Is4() {
		return fmt.Errorf("--ipv4 %s: must be an IPv4 address with its prefix length, e.g. 10.144.144.1/24", p)
	}
	if p.Bits() < minIPv4Bits || p.Bits() > maxIPv4Bits {
		return fmt.Errorf("--ipv4 %s: prefix length /%d must be between /%d and /%d", p, p.Bits(), minIPv4Bits, maxIPv4Bits)
	}
	network := p.Masked()
	first := network.Addr().Next()
	example := netip.PrefixFrom(first, p.Bits())
	switch addr {
	case network.Addr():
		return fmt.Errorf("--ipv4 %s: %s is the network address of %s: use a host address such as %s", p, addr, network, example)
	case broadcast(network):
		return fmt.Errorf("--ipv4 %s: %s is the broadcast address of %s: use a host address such as %s", p, addr, network, example)
	}
	return nil
}

// broadcast returns the last address of an IPv4 network.
func broadcast(network netip.Prefix) netip.Addr {
	a := network.Addr().As4()
	bits := network.Bits()
	for i := range a {
		hostBits := max(0, min(8, 8*(i+1)-bits))
		a[i] |= byte(1<<hostBits - 1)
	}
	return netip.AddrFrom4(a)
}

func checkDev(dev string) error {
	switch {
	case dev == "":
		return errors.New("--dev is empty: give the TUN interface name, e.g. --dev weft0")
	case len(dev) > maxIfnameLen:
		return fmt.Errorf("--dev %q: interface names are at most %d characters: choose a shorter name", dev, maxIfnameLen)
	case dev == "." || dev == "..":
		return fmt.Errorf("--dev %q: not a valid interface name: use a name such as weft0", dev)
	case strings.ContainsAny(dev, "/:") || strings.IndexFunc(dev, unicode.IsSpace) >= 0:
		return fmt.Errorf("--dev %q: must not contain '/', ':' or whitespace: use a name such as weft0", dev)
	}
	return nil
}

func (c Config) checkURIs() []error {
	var errs []error
	seen := make(map[URI]bool)
	for _, u := range c.Listen {
		switch err := u.validate(); {
		case err != nil:
			errs = append(errs, fmt.Errorf("--listen %s: %w", u, err))
		case !u.IsIP():
			errs = append(errs, fmt.Errorf("--listen %s: listen on an IP address, e.g. %s://0.0.0.0:%d, not a host name", u, u.Scheme, u.Port))
		case seen[u]:
			errs = append(errs, fmt.Errorf("--listen %s is given twice: remove one", u))
		}
		seen[u] = true
	}
	for _, u := range c.Peer {
		if err := u.validate(); err != nil {
			errs = append(errs, fmt.Errorf("--peer %s: %w", u, err))
		}
	}
	if len(c.Listen) == 0 && len(c.Peer) == 0 {
		errs = append(errs, errors.New("--listen and --peer are both empty: give --listen udp://0.0.0.0:11010 so peers can reach this node, or --peer URI to reach one"))
	}
	return errs
}

func checkPath(flag, path, example string) error {
	if path == "" {
		return fmt.Errorf("%s is empty: give a path, e.g. %s %s", flag, flag, example)
	}
	return nil
}

func checkMetricsListen(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--metrics-listen %q: want host:port, e.g. 127.0.0.1:9100 or :9100 (%s)", addr, splitError(err))
	}
	if _, err := parsePort(port); err != nil {
		return fmt.Errorf("--metrics-listen %q: %w", addr, err)
	}
	return nil
}

func (c Config) checkSubnets() []error {
	var errs []error
	seen := make(map[netip.Prefix]bool)
	for _, p := range c.Subnet {
		switch {
		case !p.IsValid() || !p.Addr().Is4():
			errs = append(errs, fmt.Errorf("--subnet %s: must be an IPv4 network, e.g. 192.168.50.0/24", p))
		case p != p.Masked():
			errs = append(errs, fmt.Errorf("--subnet %s: not a network address: use %s", p, p.Masked()))
		case c.IPv4.IsValid() && p.Overlaps(c.IPv4.Masked()):
			errs = append(errs, fmt.Errorf("--subnet %s: overlaps the mesh network %s of --ipv4: expose a LAN outside it", p, c.IPv4.Masked()))
		case seen[p]:
			errs = append(errs, fmt.Errorf("--subnet %s is given twice: remove one", p))
		}
		seen[p] = true
	}
	acc := make(map[AcceptSubnet]bool)
	for _, a := range c.AcceptSubnets {
		switch {
		case !a.All && (!a.Prefix.IsValid() || !a.Prefix.Addr().Is4()):
			errs = append(errs, fmt.Errorf("--accept-subnets %s: must be all or an IPv4 network, e.g. 192.168.0.0/16", a))
		case !a.All && a.Prefix != a.Prefix.Masked():
			errs = append(errs, fmt.Errorf("--accept-subnets %s: not a network address: use %s", a, a.Prefix.Masked()))
		case acc[a]:
			errs = append(errs, fmt.Errorf("--accept-subnets %s is given twice: remove one", a))
		}
		acc[a] = true
	}
	return errs
}
