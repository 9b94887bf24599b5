package lanfw

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
)

// ForwardWarnings returns one warning per nftables base chain, in another
// table of the calling thread's network namespace, that hooks forward with
// policy drop: such a chain drops the traffic weft forwards between dev and
// subnets unless it has rules to accept it (docker, ufw and firewalld install
// such chains). Each warning names the chain and gives nft commands that let
// the traffic through. Only the ip and inet families are looked at (weft
// forwards IPv4), weft's own table is skipped, and individual drop rules are
// not inspected; iptables-legacy rules are invisible to it.
func ForwardWarnings(dev string, subnets []netip.Prefix) ([]string, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("lanfw: list nftables chains: open netlink socket: %w%s", err, permissionHint(err))
	}
	chains, err := conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("lanfw: list nftables chains: %w%s", err, permissionHint(err))
	}
	var warnings []string
	for _, c := range chains {
		if c.Table == nil || c.Hooknum == nil || *c.Hooknum != *nftables.ChainHookForward ||
			c.Policy == nil || *c.Policy != nftables.ChainPolicyDrop {
			continue
		}
		var family string
		switch c.Table.Family {
		case nftables.TableFamilyIPv4:
			family = "ip"
		case nftables.TableFamilyINet:
			family = "inet"
		default:
			continue
		}
		if c.Table.Family == nftables.TableFamilyINet && c.Table.Name == TableName(dev) {
			continue
		}
		warnings = append(warnings, dropWarning(family, c.Table.Name, c.Name, dev, subnets))
	}
	return warnings, nil
}
