package lanfw

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weft-vpn/weft/internal/netlab"
)

func TestForwardWarnings(t *testing.T) {
	h := netlab.New(t).Host("r")
	subnets := []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")}
	warnings := func() []string {
		t.Helper()
		var (
			got []string
			err error
		)
		inNetns(t, h, func() { got, err = ForwardWarnings("weft0", subnets) })
		if err != nil {
			t.Fatalf("ForwardWarnings: %v", err)
		}
		return got
	}
	if got := warnings(); len(got) != 0 {
		t.Fatalf("empty ruleset: got warnings %q", got)
	}

	// Chains that must not warn: weft's own table, IPv6 only, another hook.
	install(t, h, Options{Dev: "weft0", Subnets: subnets, SNAT: true, MTU: 1420})
	h.Run(t, "nft", "add table inet weft_weft0; add chain inet weft_weft0 dropper { type filter hook forward priority 10; policy drop; }")
	h.Run(t, "nft", "add table ip6 f6; add chain ip6 f6 FORWARD { type filter hook forward priority 0; policy drop; }")
	h.Run(t, "nft", "add table ip fin; add chain ip fin INPUT { type filter hook input priority 0; policy drop; }")
	h.Run(t, "nft", "add table ip filter; add chain ip filter FORWARD { type filter hook forward priority 0; policy accept; }")
	if got := warnings(); len(got) != 0 {
		t.Fatalf("no foreign IPv4 forward chain drops, yet got warnings %q", got)
	}

	h.Run(t, "nft", "add chain ip filter FORWARD { policy drop; }")
	h.Run(t, "nft", "add table inet fw; add chain inet fw fwdchain { type filter hook forward priority 0; policy drop; }")
	got := warnings()
	if len(got) != 2 {
		t.Fatalf("got %d warnings, want 2 (ip filter FORWARD, inet fw fwdchain): %q", len(got), got)
	}
	joined := strings.Join(got, "\n")
	for _, want := range []string{
		`nftables chain "ip filter FORWARD" has policy drop`,
		`nftables chain "inet fw fwdchain" has policy drop`,
		"between weft0 and 192.168.50.0/24",
		`nft insert rule ip filter FORWARD iifname "weft0" ip daddr 192.168.50.0/24 accept`,
		`nft insert rule ip filter FORWARD oifname "weft0" ct state established,related accept`,
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings lack %q:\n%s", want, joined)
		}
	}
}
