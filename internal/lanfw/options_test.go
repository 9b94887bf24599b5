package lanfw

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestTableName(t *testing.T) {
	if got := TableName("weft0"); got != "weft_weft0" {
		t.Errorf("TableName(weft0) = %q, want weft_weft0", got)
	}
}

func TestOptionsNormalize(t *testing.T) {
	p := netip.MustParsePrefix
	good := Options{Dev: "weft0", Subnets: []netip.Prefix{p("192.168.50.7/24"), p("192.168.50.0/24"), p("10.0.0.0/8")}, MTU: 1420}
	got, err := good.normalize()
	if err != nil {
		t.Fatalf("normalize(%+v): %v", good, err)
	}
	if want := []netip.Prefix{p("192.168.50.0/24"), p("10.0.0.0/8")}; !slices.Equal(got.Subnets, want) {
		t.Errorf("subnets = %v, want %v (masked, deduplicated)", got.Subnets, want)
	}
	if got.mss() != 1380 {
		t.Errorf("mss = %d, want 1380", got.mss())
	}

	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		errHas string
	}{
		{"no dev", func(o *Options) { o.Dev = "" }, "Dev"},
		{"long dev", func(o *Options) { o.Dev = "weft0123456789ab" }, "not a valid interface name"},
		{"dev with quote", func(o *Options) { o.Dev = `we"ft` }, "not a valid interface name"},
		{"zero MTU", func(o *Options) { o.MTU = 0 }, "Options.MTU 0 is out of range"},
		{"huge MTU", func(o *Options) { o.MTU = 70000 }, "Options.MTU 70000"},
		{"no subnets", func(o *Options) { o.Subnets = nil }, "at least one LAN prefix"},
		{"IPv6 subnet", func(o *Options) { o.Subnets = []netip.Prefix{p("fd00::/64")} }, "not an IPv4 prefix"},
		{"invalid subnet", func(o *Options) { o.Subnets = []netip.Prefix{{}} }, "not an IPv4 prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.mutate(&o)
			if _, err := o.normalize(); err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("err = %v, want one containing %q", err, tc.errHas)
			}
			// Install refuses the same options before touching the kernel.
			if tbl, err := Install(o); err == nil {
				_ = tbl.Close()
				t.Errorf("Install accepted %+v", o)
			}
		})
	}
}

func TestDropWarning(t *testing.T) {
	p := netip.MustParsePrefix
	one := dropWarning("ip", "filter", "FORWARD", "weft0", []netip.Prefix{p("192.168.50.0/24")})
	want := `nftables chain "ip filter FORWARD" has policy drop: forwarded traffic between weft0 and 192.168.50.0/24 ` +
		`will be dropped unless you allow it, e.g. nft insert rule ip filter FORWARD iifname "weft0" ip daddr 192.168.50.0/24 accept; ` +
		`nft insert rule ip filter FORWARD oifname "weft0" ct state established,related accept`
	if one != want {
		t.Errorf("got\n%s\nwant\n%s", one, want)
	}
	two := dropWarning("inet", "fw", "fwd", "weft1", []netip.Prefix{p("10.1.0.0/16"), p("10.2.0.0/16")})
	for _, w := range []string{"between weft1 and 10.1.0.0/16, 10.2.0.0/16", `iifname "weft1" ip daddr { 10.1.0.0/16, 10.2.0.0/16 } accept`} {
		if !strings.Contains(two, w) {
			t.Errorf("%q lacks %q", two, w)
		}
	}
}
