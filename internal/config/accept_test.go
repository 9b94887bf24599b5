package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestAccepts(t *testing.T) {
	def := Default()
	all := Config{AcceptSubnets: []AcceptSubnet{{All: true}}}
	exact := Config{AcceptSubnets: []AcceptSubnet{{All: true}, {Prefix: netip.MustParsePrefix("169.254.169.254/32")}}}
	pub := Config{AcceptSubnets: []AcceptSubnet{{Prefix: netip.MustParsePrefix("198.51.100.0/24")}}}
	cases := []struct {
		c      Config
		name   string
		prefix string
		want   bool
	}{
		{def, "default", "192.168.50.0/24", true},
		{def, "default", "10.9.0.0/16", true},
		{def, "default", "100.64.1.0/24", true},
		{def, "default", "172.20.0.0/16", true},
		{def, "default", "172.0.0.0/8", false}, // wider than 172.16/12
		{def, "default", "198.51.100.0/24", false},
		{def, "default", "169.254.169.254/32", false},
		{def, "default", "0.0.0.0/0", false},
		{all, "all", "198.51.100.0/24", true},
		{all, "all", "169.254.169.254/32", false},
		{all, "all", "127.0.0.0/8", false},
		{all, "all", "224.0.0.0/24", false},
		{all, "all", "0.0.0.0/0", false},
		{all, "all", "160.0.0.0/4", false}, // contains link-local
		{exact, "exact", "169.254.169.254/32", true},
		{exact, "exact", "169.254.0.0/16", false},
		{pub, "public /24", "198.51.100.128/25", true},
		{pub, "public /24", "198.51.0.0/16", false},
	}
	for _, c := range cases {
		if got := c.c.Accepts(netip.MustParsePrefix(c.prefix)); got != c.want {
			t.Errorf("%s accepts %s = %v, want %v", c.name, c.prefix, got, c.want)
		}
	}
}

func TestAcceptSubnetsFlag(t *testing.T) {
	for _, c := range []struct {
		arg, err string
	}{
		{"all", ""}, {"192.168.0.0/16", ""}, {"192.168.1.1/16", "not a network address: use 192.168.0.0/16"},
		{"nonsense", "want all or an IPv4 network"}, {"fd00::/8", "must be all or an IPv4 network"},
	} {
		a, err := parseAcceptSubnet(c.arg)
		if err == nil {
			errs := Config{AcceptSubnets: []AcceptSubnet{a}}.checkSubnets()
			if len(errs) > 0 {
				err = errs[0]
			}
		}
		switch {
		case c.err == "" && err != nil:
			t.Errorf("--accept-subnets %s: %v", c.arg, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("--accept-subnets %s: error %v, want one containing %q", c.arg, err, c.err)
		}
	}
}
