package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// URI is a transport address: udp://host:port or tcp://host:port.
//
// Host is an IPv4 address, an IPv6 address (written in brackets in the URI, stored without them) or a
// DNS name, which the node resolves when it dials; config does not resolve names.
type URI struct {
	Scheme string // "udp" or "tcp"
	Host   string // without brackets
	Port   uint16
}

const uriForm = "want scheme://host:port with scheme udp or tcp, e.g. udp://192.0.2.1:11010"

// ParseURI parses udp://host:port or tcp://host:port. An IPv6 host must be in brackets:
// udp://[2001:db8::1]:11010.
func ParseURI(s string) (URI, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "udp" && scheme != "tcp") {
		return URI{}, fmt.Errorf("%q: %s", s, uriForm)
	}
	host, portText, err := net.SplitHostPort(rest)
	if err != nil {
		return URI{}, fmt.Errorf("%q: %s (%v)", s, uriForm, splitError(err))
	}
	if strings.HasPrefix(rest, "[") {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return URI{}, fmt.Errorf("%q: brackets are only for IPv6 addresses, e.g. udp://[2001:db8::1]:11010", s)
		}
	}
	port, err := parsePort(portText)
	if err != nil {
		return URI{}, fmt.Errorf("%q: %w", s, err)
	}
	u := URI{Scheme: scheme, Host: host, Port: port}
	if err := u.validate(); err != nil {
		return URI{}, fmt.Errorf("%q: %w", s, err)
	}
	return u, nil
}

// splitError shortens net.SplitHostPort's error to its cause ("missing port in address") and says
// how to write an IPv6 address.
func splitError(err error) string {
	ae, ok := err.(*net.AddrError)
	if !ok {
		return err.Error()
	}
	if ae.Err == "too many colons in address" {
		return "put an IPv6 address in brackets, e.g. udp://[2001:db8::1]:11010"
	}
	return ae.Err
}

// parsePort parses a port number in 1..65535.
func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q must be a number between 1 and 65535", s)
	}
	return uint16(n), nil
}

// String returns the URI in the form ParseURI reads, with brackets around an IPv6 host:
// udp://[::1]:11010.
func (u URI) String() string {
	return u.Scheme + "://" + u.HostPort()
}

// HostPort returns host:port as net.Dial takes it, e.g. "[::1]:11010".
func (u URI) HostPort() string {
	return net.JoinHostPort(u.Host, strconv.Itoa(int(u.Port)))
}

// MarshalText implements encoding.TextMarshaler (TOML and JSON use the String form).
func (u URI) MarshalText() ([]byte, error) {
	return []byte(u.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseURI.
func (u *URI) UnmarshalText(text []byte) error {
	parsed, err := ParseURI(string(text))
	if err != nil {
		return err
	}
	*u = parsed
	return nil
}

// IsIP reports whether the host is an IP address rather than a DNS name.
func (u URI) IsIP() bool {
	_, err := netip.ParseAddr(u.Host)
	return err == nil
}

// validate checks a URI that may have been built without ParseURI.
func (u URI) validate() error {
	if u.Scheme != "udp" && u.Scheme != "tcp" {
		return fmt.Errorf("scheme %q: use udp or tcp", u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("missing host: use 0.0.0.0 or [::] for all addresses, or a peer's address or name")
	}
	if u.Port == 0 {
		return fmt.Errorf("port 0 is not allowed: use a port between 1 and 65535")
	}
	if u.IsIP() {
		return nil
	}
	return checkDNSName(u.Host)
}

// checkDNSName accepts letters, digits, '-' and '_' in dot-separated labels of 1..63 characters,
// 253 characters in all, with an optional final dot. A name whose last label is all digits is a
// mistyped IP address, not a name.
func checkDNSName(name string) error {
	trimmed := strings.TrimSuffix(name, ".")
	if trimmed == "" || len(trimmed) > 253 {
		return fmt.Errorf("host %q is not an IP address or a DNS name", name)
	}
	labels := strings.Split(trimmed, ".")
	for _, label := range labels {
		if !validLabel(label) {
			return fmt.Errorf("host %q is not an IP address or a DNS name (label %q)", name, label)
		}
	}
	if _, err := strconv.Atoi(labels[len(labels)-1]); err == nil {
		return fmt.Errorf("host %q is not a valid IP address", name)
	}
	return nil
}

func validLabel(label string) bool {
	if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
		return false
	}
	for _, r := range label {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if !ok {
			return false
		}
	}
	return true
}
