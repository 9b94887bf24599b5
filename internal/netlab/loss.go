package netlab

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// SetLoss drops the given per-mille (0 to 1000) of the IPv4 packets arriving on iface, picked at
// random. It uses an nftables netdev table "weftlab_loss_<iface>" with a chain on the ingress hook of
// that device and the rule `meta protocol ip numgen random mod 1000 < N drop` (for 1000, without the
// numgen match, since nft rejects a comparison that is always true). Calling it again
// replaces the rate; 0 removes the table. Deleting the namespace removes the table as well.
func (h *Host) SetLoss(t testing.TB, iface string, permille int) {
	t.Helper()
	if permille < 0 || permille > 1000 {
		t.Fatalf("netlab: SetLoss on %s/%s: permille %d out of range 0..1000", h.name, iface, permille)
	}
	if iface == "" || len(iface) > maxIfName || strings.ContainsAny(iface, "\"\\ \n") {
		t.Fatalf("netlab: SetLoss on %s: bad interface name %q", h.name, iface)
	}
	table := lossTable(iface)
	// Adding then deleting the table in one transaction removes it whether or not it existed
	// (nft 1.0.6 has no "destroy").
	script := fmt.Sprintf("add table netdev %s\ndelete table netdev %s\n", table, table)
	if permille > 0 {
		script += fmt.Sprintf(`table netdev %s {
	chain ingress {
		type filter hook ingress device "%s" priority -500; policy accept;
		meta protocol ip %s drop
	}
}
`, table, iface, lossMatch(permille))
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := h.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := combinedOutput(cmd); err != nil {
		t.Fatalf("netlab: SetLoss %d‰ on %s/%s: %v\n%s\nscript:\n%s", permille, h.name, iface, err, out, script)
	}
}

// lossTable returns the nftables table name for iface, with characters nft would not accept in an
// identifier replaced by '_'.
func lossTable(iface string) string {
	clean := strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, iface)
	return "weftlab_loss_" + clean
}

// lossMatch returns the nft match that selects permille (1..1000) of the packets at random.
func lossMatch(permille int) string {
	if permille >= 1000 {
		return ""
	}
	return fmt.Sprintf("numgen random mod 1000 < %d", permille)
}
