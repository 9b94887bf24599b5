package lanfw

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weft-vpn/weft/internal/netlab"
)

var testSubnets = []netip.Prefix{
	netip.MustParsePrefix("192.168.50.0/24"),
	netip.MustParsePrefix("10.7.0.0/16"),
}

func TestInstallRules(t *testing.T) {
	for _, snat := range []bool{true, false} {
		name := "snat"
		if !snat {
			name = "no-snat"
		}
		t.Run(name, func(t *testing.T) {
			h := netlab.New(t).Host("r")
			install(t, h, Options{Dev: "weft0", Subnets: testSubnets, SNAT: snat, MTU: 1420})
			out := h.Run(t, "nft", "list", "table", "inet", "weft_weft0")
			want := []string{
				"chain forward",
				"hook forward priority mangle; policy accept;",
				`iifname "weft0" ip daddr 192.168.50.0/24`,
				`oifname "weft0" ip saddr 192.168.50.0/24`,
				`iifname "weft0" ip daddr 10.7.0.0/16`,
				`oifname "weft0" ip saddr 10.7.0.0/16`,
				"tcp option maxseg size > 1380 tcp option maxseg size set 1380",
			}
			if snat {
				want = append(want, "hook postrouting priority srcnat;",
					`iifname "weft0" oifname != "weft0" ip daddr 192.168.50.0/24 masquerade`,
					`iifname "weft0" oifname != "weft0" ip daddr 10.7.0.0/16 masquerade`)
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("table lacks %q:\n%s", w, out)
				}
			}
			if got, wantN := strings.Count(out, "maxseg size set"), 4; got != wantN {
				t.Errorf("%d MSS rules, want %d (2 subnets x 2 directions):\n%s", got, wantN, out)
			}
			if !snat && (strings.Contains(out, "masquerade") || strings.Contains(out, "postrouting")) {
				t.Errorf("SNAT=false but the table masquerades:\n%s", out)
			}
		})
	}
}

func TestInstallReplacesStaleAndCloseRemoves(t *testing.T) {
	h := netlab.New(t).Host("r")
	// Someone else's table, and the debris of a killed run.
	h.Run(t, "nft", "add table ip other; add chain ip other fwdchain { type filter hook forward priority 0; policy accept; }; add rule ip other fwdchain iifname \"weft0\" counter")
	h.Run(t, "nft", "add table inet weft_weft0; add chain inet weft_weft0 stale")
	other := h.Run(t, "nft", "list", "table", "ip", "other")

	opts := Options{Dev: "weft0", Subnets: testSubnets[:1], SNAT: true, MTU: 1400}
	first := install(t, h, opts)
	second := install(t, h, opts) // a restart over a table left behind
	if first.Name() != "weft_weft0" {
		t.Errorf("Name() = %q, want weft_weft0", first.Name())
	}
	out := h.Run(t, "nft", "list", "table", "inet", "weft_weft0")
	if strings.Contains(out, "stale") {
		t.Errorf("the stale table's chain survived Install:\n%s", out)
	}
	if n := strings.Count(out, "masquerade"); n != 1 {
		t.Errorf("%d masquerade rules after installing twice, want 1:\n%s", n, out)
	}
	if n := strings.Count(h.Run(t, "nft", "list", "tables"), "weft_weft0"); n != 1 {
		t.Errorf("%d weft_weft0 tables, want 1", n)
	}

	// Close is called outside the namespace: the Table remembers it.
	if err := second.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	tables := h.Run(t, "nft", "list", "tables")
	if strings.Contains(tables, "weft_weft0") {
		t.Errorf("table still there after Close:\n%s", tables)
	}
	if got := h.Run(t, "nft", "list", "table", "ip", "other"); got != other {
		t.Errorf("table ip other changed:\nbefore:\n%s\nafter:\n%s", other, got)
	}
	// The first handle's table is gone already; closing it (twice) is fine.
	for range 2 {
		if err := first.Close(); err != nil {
			t.Errorf("Close of a table already gone: %v", err)
		}
	}
}
