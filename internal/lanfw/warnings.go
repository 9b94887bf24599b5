package lanfw

import (
	"fmt"
	"net/netip"
	"strings"
)

// dropWarning words the warning for a forward base chain with policy drop:
// family, table and chain name it, dev and subnets say what traffic is at
// stake, and the text ends with nft commands that let it through.
func dropWarning(family, table, chain, dev string, subnets []netip.Prefix) string {
	where := fmt.Sprintf("%s %s %s", family, table, chain)
	lans := "the exposed subnets"
	daddr := ""
	if len(subnets) > 0 {
		strs := make([]string, len(subnets))
		for i, p := range subnets {
			strs[i] = p.String()
		}
		lans = strings.Join(strs, ", ")
		daddr = " ip daddr " + strs[0]
		if len(strs) > 1 {
			daddr = " ip daddr { " + lans + " }"
		}
	}
	return fmt.Sprintf("nftables chain %q has policy drop: forwarded traffic between %s and %s will be dropped unless you allow it, "+
		"e.g. nft insert rule %s iifname %q%s accept; nft insert rule %s oifname %q ct state established,related accept",
		where, dev, lans, where, dev, daddr, where, dev)
}
