package mesh

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/weft-vpn/weft/internal/session"
)

// NodeInfo is a node reachable from this one, with the first hop of the cheapest path to it.
type NodeInfo struct {
	ID       session.NodeID
	Hostname string
	IPv4     netip.Prefix
	ProxyIn  bool
	// NextHop is the direct neighbour packets for this node are sent to (the node itself when direct).
	NextHop session.NodeID
	// Hops is the number of sessions on the path (1 for a direct neighbour).
	Hops int
	// CostUS is the sum of the announced link costs along the path, in microseconds.
	CostUS uint64
}

// Route is one remote prefix and the node that owns it.
type Route struct {
	Prefix netip.Prefix
	Node   session.NodeID
	// Proxy is the owner's "proxy: allow" for this prefix.
	Proxy bool
	// Subnet is true for an exposed LAN, false for a node's own virtual IP (/32).
	Subnet bool
}

// Conflict is a prefix claimed by more than one node.
type Conflict struct {
	Prefix netip.Prefix
	Nodes  []session.NodeID // every claimant, the winner first
	Text   string
}

// Table is an immutable routing snapshot computed from the database. Lookups are safe for concurrent use.
type Table struct {
	self      session.NodeID
	nodes     map[session.NodeID]NodeInfo
	hosts     map[netip.Addr]Route // node virtual IPs, winner of each
	subnets   []Route              // most specific first
	conflicts []Conflict
	claims    *Claims // first claims of virtual IPs; nil: lowest node ID wins
}

// Compute builds the routing table of node self from the announcements anns (self's own included);
// of two nodes with one virtual IP, the lower node ID wins.
func Compute(self session.NodeID, anns []Announce) *Table { return ComputeWithClaims(self, anns, nil) }

// ComputeWithClaims is Compute where claims (if not nil) settle a virtual IP announced by several
// nodes: its holder wins, and while the holder is absent nobody else gets the address.
func ComputeWithClaims(self session.NodeID, anns []Announce, claims *Claims) *Table {
	byID := make(map[session.NodeID]*Announce, len(anns))
	for i := range anns {
		byID[anns[i].Origin] = &anns[i]
	}
	t := &Table{self: self, nodes: make(map[session.NodeID]NodeInfo), hosts: make(map[netip.Addr]Route), claims: claims}
	if byID[self] == nil {
		return t
	}
	t.shortestPaths(byID)
	t.installPrefixes(byID)
	return t
}

// links returns the two-way-checked links of a: neighbours that list a as well.
func links(a *Announce, byID map[session.NodeID]*Announce) []Neighbor {
	var out []Neighbor
	for _, n := range a.Neighbors {
		b := byID[n.ID]
		if b == nil || n.ID == a.Origin {
			continue
		}
		if slices.ContainsFunc(b.Neighbors, func(x Neighbor) bool { return x.ID == a.Origin }) {
			out = append(out, n)
		}
	}
	return out
}

// shortestPaths runs Dijkstra from self. Ties are broken by fewer hops, then by the lower first-hop ID,
// so every run over the same database gives the same answer.
func (t *Table) shortestPaths(byID map[session.NodeID]*Announce) {
	type state struct {
		cost  uint64
		hops  int
		first session.NodeID
		done  bool
	}
	st := map[session.NodeID]*state{t.self: {}}
	better := func(c uint64, h int, f session.NodeID, s *state) bool {
		if c != s.cost {
			return c < s.cost
		}
		if h != s.hops {
			return h < s.hops
		}
		return f < s.first
	}
	for {
		var u session.NodeID
		var us *state
		for id, s := range st {
			if !s.done && (us == nil || better(s.cost, s.hops, s.first, us) || (s.cost == us.cost && s.hops == us.hops && s.first == us.first && id < u)) {
				u, us = id, s
			}
		}
		if us == nil {
			break
		}
		us.done = true
		a := byID[u]
		if a == nil {
			continue
		}
		if u != t.self {
			t.nodes[u] = NodeInfo{ID: u, Hostname: a.Hostname, IPv4: a.IPv4, ProxyIn: a.ProxyIn,
				NextHop: us.first, Hops: us.hops, CostUS: us.cost}
		}
		for _, n := range links(a, byID) {
			c, h, f := us.cost+uint64(n.CostUS), us.hops+1, us.first
			if u == t.self {
				f = n.ID
			}
			s := st[n.ID]
			if s == nil {
				st[n.ID] = &state{cost: c, hops: h, first: f}
			} else if !s.done && better(c, h, f, s) {
				s.cost, s.hops, s.first = c, h, f
			}
		}
	}
}

// installPrefixes picks an owner for every virtual IP and subnet announced by a reachable node.
func (t *Table) installPrefixes(byID map[session.NodeID]*Announce) {
	selfA := byID[t.self]
	// Virtual IPs and subnets are claimed apart: a subnet 10.144.144.2/32 is not the virtual IP
	// 10.144.144.2, and must not take part in the virtual IP's duplicate rule.
	type key struct {
		p      netip.Prefix
		subnet bool
	}
	claims := map[key][]Route{}
	claim := func(r Route) { claims[key{r.Prefix, r.Subnet}] = append(claims[key{r.Prefix, r.Subnet}], r) }
	claim(Route{Prefix: netip.PrefixFrom(selfA.IPv4.Addr(), 32), Node: t.self, Proxy: selfA.ProxyIn})
	for _, s := range selfA.Subnets {
		claim(Route{Prefix: s.Prefix, Node: t.self, Proxy: s.Proxy, Subnet: true})
	}
	for id, n := range t.nodes {
		a := byID[id]
		claim(Route{Prefix: netip.PrefixFrom(n.IPv4.Addr(), 32), Node: id, Proxy: a.ProxyIn})
		for _, s := range a.Subnets {
			claim(Route{Prefix: s.Prefix, Node: id, Proxy: s.Proxy, Subnet: true})
		}
	}
	keys := make([]key, 0, len(claims))
	for k := range claims {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		c := cmp.Or(b.p.Bits()-a.p.Bits(), a.p.Addr().Compare(b.p.Addr()))
		if c == 0 && a.subnet != b.subnet {
			if a.subnet {
				return 1
			}
			return -1
		}
		return c
	})
	var heldIPs map[netip.Addr]session.NodeID
	if t.claims != nil {
		heldIPs = t.claims.Held()
	}
	for _, k := range keys {
		p, rs := k.p, claims[k]
		if k.subnet && heldIPs != nil {
			if rs = t.dropCovering(p, rs, heldIPs); len(rs) == 0 {
				continue
			}
		}
		holder, held := session.NodeID(0), false
		if !rs[0].Subnet && t.claims != nil {
			var refused bool
			if holder, held, refused = t.byClaim(p, rs); refused {
				continue
			}
		}
		// Winner: this node if it is a claimant (its own traffic stays local), else for a virtual IP the
		// node this node saw claim it first (with claims), else the lowest node ID (the same on every
		// node, so traffic is never split); for a subnet the lowest cost then the lowest node ID.
		slices.SortFunc(rs, func(a, b Route) int {
			if a.Node == t.self {
				return -1
			}
			if b.Node == t.self {
				return 1
			}
			if held && a.Node == holder {
				return -1
			}
			if held && b.Node == holder {
				return 1
			}
			if a.Subnet {
				if c := cmp.Compare(t.nodes[a.Node].CostUS, t.nodes[b.Node].CostUS); c != 0 {
					return c
				}
			}
			return cmp.Compare(a.Node, b.Node)
		})
		if len(rs) > 1 {
			t.conflicts = append(t.conflicts, t.conflict(p, rs))
		}
		w := rs[0]
		if w.Node == t.self {
			continue
		}
		if w.Subnet {
			t.subnets = append(t.subnets, w)
		} else {
			t.hosts[p.Addr()] = w
		}
	}
	// Overlapping (not identical) subnets: longest prefix wins at lookup; still worth a warning.
	for i, a := range t.subnets {
		for _, b := range t.subnets[i+1:] {
			if a.Node != b.Node && b.Prefix.Overlaps(a.Prefix) {
				t.conflicts = append(t.conflicts, Conflict{Prefix: b.Prefix, Nodes: []session.NodeID{a.Node, b.Node},
					Text: fmt.Sprintf("subnet %v of node %v overlaps %v of node %v: the more specific %v wins for its addresses",
						a.Prefix, a.Node, b.Prefix, b.Node, a.Prefix)})
			}
		}
	}
	if selfA != nil {
		for _, own := range selfA.Subnets {
			for _, r := range t.subnets {
				if r.Prefix != own.Prefix && r.Prefix.Overlaps(own.Prefix) {
					t.conflicts = append(t.conflicts, Conflict{Prefix: r.Prefix, Nodes: []session.NodeID{t.self, r.Node},
						Text: fmt.Sprintf("subnet %v of node %v overlaps this node's subnet %v", r.Prefix, r.Node, own.Prefix)})
				}
			}
		}
	}
}

// byClaim looks up the holder of virtual IP p's claim. With the holder absent (not among the
// claimants rs, and this node not one of them) it refuses the address to the others (a conflict says
// so) and reports refused.
func (t *Table) byClaim(p netip.Prefix, rs []Route) (holder session.NodeID, held, refused bool) {
	holder, held = t.claims.Owner(p.Addr())
	if !held || slices.ContainsFunc(rs, func(r Route) bool { return r.Node == holder || r.Node == t.self }) {
		return holder, held, false
	}
	c := Conflict{Prefix: p, Nodes: []session.NodeID{holder}}
	names := ""
	for j, r := range rs {
		c.Nodes = append(c.Nodes, r.Node)
		if j > 0 {
			names += ", "
		}
		names += t.name(r.Node)
	}
	c.Text = fmt.Sprintf("virtual IP %v is held by node %v, which claimed it first and is absent now; the claim of %s is refused",
		p.Addr(), holder, names)
	t.conflicts = append(t.conflicts, c)
	return holder, held, true
}

// dropCovering removes from rs (the claimants of subnet p) every other node's claim of a subnet that
// covers a virtual IP held by someone else: a member must not take an address, held or absent, by
// announcing it (or a network around it) as a LAN. Each removal is a conflict.
func (t *Table) dropCovering(p netip.Prefix, rs []Route, held map[netip.Addr]session.NodeID) []Route {
	out := rs[:0:0]
	for _, r := range rs {
		var victim netip.Addr
		var holder session.NodeID
		for ip, h := range held {
			if h != r.Node && p.Contains(ip) {
				victim, holder = ip, h
				break
			}
		}
		if !victim.IsValid() || r.Node == t.self {
			out = append(out, r)
			continue
		}
		t.conflicts = append(t.conflicts, Conflict{Prefix: p, Nodes: []session.NodeID{holder, r.Node},
			Text: fmt.Sprintf("subnet %v of node %s covers virtual IP %v, held by node %v: not routed", p, t.name(r.Node), victim, holder)})
	}
	return out
}

func (t *Table) conflict(p netip.Prefix, rs []Route) Conflict {
	c := Conflict{Prefix: p}
	for _, r := range rs {
		c.Nodes = append(c.Nodes, r.Node)
	}
	kind := "subnet"
	if !rs[0].Subnet {
		kind = "virtual IP"
		p = netip.PrefixFrom(p.Addr(), 32)
	}
	names := ""
	for i, id := range c.Nodes {
		if i > 0 {
			names += ", "
		}
		names += t.name(id)
	}
	why := ""
	if !rs[0].Subnet && t.claims != nil && c.Nodes[0] != t.self {
		why = " (it claimed the address first)"
	}
	c.Text = fmt.Sprintf("duplicate %s %v claimed by nodes %s: traffic goes to %s only%s; give each node its own", kind, p.Addr(), names, t.name(c.Nodes[0]), why)
	if rs[0].Subnet {
		c.Text = fmt.Sprintf("subnet %v announced by nodes %s: traffic from here goes to %s only", p, names, t.name(c.Nodes[0]))
	}
	return c
}

func (t *Table) name(id session.NodeID) string {
	if id == t.self {
		return id.String() + " (this node)"
	}
	if n, ok := t.nodes[id]; ok && n.Hostname != "" {
		return id.String() + " (" + n.Hostname + ")"
	}
	return id.String()
}

// Lookup returns the route for a destination address: a node's virtual IP first, then the most specific
// exposed subnet. It reports false for addresses no remote node owns (including this node's own).
func (t *Table) Lookup(dst netip.Addr) (Route, bool) {
	if r, ok := t.hosts[dst]; ok {
		return r, true
	}
	for _, r := range t.subnets {
		if r.Prefix.Contains(dst) {
			return r, true
		}
	}
	return Route{}, false
}

// Node returns what the table knows of a reachable node.
func (t *Table) Node(id session.NodeID) (NodeInfo, bool) {
	n, ok := t.nodes[id]
	return n, ok
}

// Nodes returns every reachable node except this one, ordered by virtual IP.
func (t *Table) Nodes() []NodeInfo {
	out := make([]NodeInfo, 0, len(t.nodes))
	for _, n := range t.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b NodeInfo) int {
		return cmp.Or(a.IPv4.Addr().Compare(b.IPv4.Addr()), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Routes returns every remote prefix with its owner, most specific first.
func (t *Table) Routes() []Route {
	out := make([]Route, 0, len(t.hosts)+len(t.subnets))
	for _, r := range t.hosts {
		out = append(out, r)
	}
	out = append(out, t.subnets...)
	slices.SortFunc(out, func(a, b Route) int {
		return cmp.Or(a.Prefix.Addr().Compare(b.Prefix.Addr()), a.Prefix.Bits()-b.Prefix.Bits())
	})
	return out
}

// Conflicts returns every prefix claimed by more than one node.
func (t *Table) Conflicts() []Conflict { return t.conflicts }
