package lanfw

// Anti-spoofing. Mesh addresses (the virtual network and the prefixes the mesh routes into the TUN)
// are reachable only through the TUN, so a packet that claims one of them as its source but arrives on
// any other interface (the underlay, a LAN) was forged by a host there. The guard table drops those
// before routing and conntrack see them:
//
//	table inet weft_<dev>_guard
//	  chain prerouting (filter, priority raw, policy accept)
//	    meta nfproto ipv4 iifname != "<dev>" iifname != "lo" ip saddr <prefix> counter drop   (one per prefix)
//
// The node rewrites the rules (in one transaction) whenever the set of mesh prefixes changes.

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

const guardChain = "prerouting"

// GuardTableName is the name of the anti-spoofing table for dev: "weft_<dev>_guard" (family inet).
func GuardTableName(dev string) string { return tablePrefix + dev + "_guard" }

// Guard is the installed anti-spoofing table. Close deletes it.
type Guard struct {
	dev   string
	table *nftables.Table
	chain *nftables.Chain

	mu      sync.Mutex
	conn    *nftables.Conn // nil once closed
	sources []netip.Prefix
}

// InstallGuard creates the anti-spoofing table for dev (replacing a stale one) with no prefixes yet,
// in the network namespace of the calling thread.
func InstallGuard(dev string) (*Guard, error) {
	if err := checkDev(dev); err != nil {
		return nil, err
	}
	name := GuardTableName(dev)
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("lanfw: install table inet %s: open netlink socket: %w%s", name, err, permissionHint(err))
	}
	g := &Guard{dev: dev, conn: conn, table: &nftables.Table{Family: nftables.TableFamilyINet, Name: name}}
	conn.AddTable(g.table)
	conn.DelTable(g.table)
	conn.AddTable(g.table)
	accept := nftables.ChainPolicyAccept
	g.chain = conn.AddChain(&nftables.Chain{
		Name: guardChain, Table: g.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept,
	})
	if err := conn.Flush(); err != nil {
		_ = conn.CloseLasting()
		return nil, fmt.Errorf("lanfw: install table inet %s: %w%s", name, err, permissionHint(err))
	}
	return g, nil
}

// SetSources makes the guard drop packets from prefixes that arrive on another interface than the TUN
// (and loopback). It does nothing when the set is unchanged.
func (g *Guard) SetSources(prefixes []netip.Prefix) error {
	ps := make([]netip.Prefix, 0, len(prefixes))
	for _, p := range prefixes {
		if p.IsValid() && p.Addr().Is4() {
			ps = append(ps, p.Masked())
		}
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	ps = slices.Compact(ps)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn == nil {
		return fmt.Errorf("lanfw: table inet %s is closed", g.table.Name)
	}
	if slices.Equal(ps, g.sources) {
		return nil
	}
	g.conn.FlushChain(g.chain)
	for _, p := range ps {
		g.conn.AddRule(&nftables.Rule{Table: g.table, Chain: g.chain, Exprs: spoofRule(g.dev, p)})
	}
	if err := g.conn.Flush(); err != nil {
		return fmt.Errorf("lanfw: update table inet %s: %w", g.table.Name, err)
	}
	g.sources = ps
	return nil
}

// Close deletes the table; calling it again does nothing.
func (g *Guard) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn == nil {
		return nil
	}
	conn := g.conn
	g.conn = nil
	return deleteTable(conn, g.table.Name)
}

// spoofRule drops IPv4 packets with a source in p that came in on neither dev nor loopback.
func spoofRule(dev string, p netip.Prefix) []expr.Any {
	e := matchIPv4()
	e = append(e, matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, dev)...)
	e = append(e, matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, "lo")...)
	e = append(e, matchPrefix(ipv4SrcOffset, p)...)
	return append(e, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
}
