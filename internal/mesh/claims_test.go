package mesh

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClaimsFirstWins: node 9 claims 10.0.0.2 first; node 3 (a lower node ID, which the old rule
// would have preferred) claims it later and gets no route, also after a restart (the file), and also
// while 9 is absent; once 9 has been absent past ClaimHold, 3 takes it.
func TestClaimsFirstWins(t *testing.T) {
	const self, first, later = 1, 9, 3
	path := filepath.Join(t.TempDir(), "claims.json")
	c, _, err := LoadClaims(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	me := ann(self, "10.0.0.1/24", nb(first, 100), nb(later, 100))
	a9 := ann(first, "10.0.0.2/24", nb(self, 100))
	a3 := ann(later, "10.0.0.2/24", nb(self, 100))
	if !c.Observe([]Announce{me, a9}, now) {
		t.Fatal("a new claim did not change the claims")
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	owner := func(c *Claims, anns []Announce) (Route, *Table) {
		t.Helper()
		tab := ComputeWithClaims(self, anns, c)
		r, _ := tab.Lookup(netip.MustParseAddr("10.0.0.2"))
		return r, tab
	}
	now = now.Add(time.Minute)
	c.Observe([]Announce{me, a9, a3}, now)
	if r, tab := owner(c, []Announce{me, a9, a3}); r.Node != first {
		t.Fatalf("10.0.0.2 goes to node %v, want %v (first claimant); conflicts %v", r.Node, first, tab.Conflicts())
	} else if cs := tab.Conflicts(); len(cs) != 1 || !strings.Contains(cs[0].Text, "claimed the address first") {
		t.Fatalf("conflicts %+v, want one saying the winner claimed first", cs)
	}
	if r, _ := owner(nil, []Announce{me, a9, a3}); r.Node != later {
		t.Fatalf("without claims the lowest node ID should win (the old rule); got %v", r.Node)
	}

	// A restart: the file keeps the first claim, even when the later claimant is seen first now.
	c2, _, err := LoadClaims(path)
	if err != nil {
		t.Fatal(err)
	}
	c2.Observe([]Announce{me, a3}, now)
	if _, ok := ComputeWithClaims(self, []Announce{me, a3}, c2).Lookup(netip.MustParseAddr("10.0.0.2")); ok {
		t.Fatal("with the holder absent, the later claimant got the address")
	}
	tab := ComputeWithClaims(self, []Announce{me, a3}, c2)
	if cs := tab.Conflicts(); len(cs) != 1 || !strings.Contains(cs[0].Text, "is held by node") {
		t.Fatalf("conflicts %+v, want one saying the address is held", cs)
	}
	if r, _ := owner(c2, []Announce{me, a9, a3}); r.Node != first {
		t.Fatalf("after a restart 10.0.0.2 goes to node %v, want %v", r.Node, first)
	}

	// The holder absent past ClaimHold: the address moves.
	c2.Observe([]Announce{me, a3}, now.Add(ClaimHold+time.Hour))
	if r, _ := owner(c2, []Announce{me, a3}); r.Node != later {
		t.Fatalf("after ClaimHold of absence 10.0.0.2 goes to node %v, want %v", r.Node, later)
	}
}

func TestClaimsCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "claims.json")
	c, _, _ := LoadClaims(path)
	c.Observe([]Announce{ann(2, "10.0.0.2/24")}, time.Now())
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if err := writeFileForTest(path, "{not json"); err != nil {
		t.Fatal(err)
	}
	c, warn, err := LoadClaims(path)
	if err != nil || warn == nil || !strings.Contains(warn.Error(), "corrupt") || !strings.Contains(warn.Error(), path) {
		t.Fatalf("corrupt claims file: %v, warning %v; want a warning naming the file", err, warn)
	}
	if _, ok := c.Owner(netip.MustParseAddr("10.0.0.2")); ok {
		t.Fatal("claims from a corrupt file survived")
	}
	if b, err := os.ReadFile(path + ".corrupt"); err != nil || string(b) != "{not json" {
		t.Fatalf("the corrupt file was not kept aside: %q, %v", b, err)
	}
}

// TestClaimsOrderAndSquatting: which of two announcements comes first in one Observe does not change
// the holder; a node that changes its address releases the old one (no squatting by cycling).
func TestClaimsOrderAndSquatting(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	holder, other := ann(9, "10.0.0.2/24"), ann(3, "10.0.0.2/24")
	for _, order := range [][]Announce{{holder, other}, {other, holder}} {
		c, _, _ := LoadClaims("")
		c.Observe([]Announce{holder}, now)
		// Much later (past ClaimHold since the last refresh), both announce it in one call.
		c.Observe(order, now.Add(ClaimHold+time.Hour))
		if id, _ := c.Owner(netip.MustParseAddr("10.0.0.2")); id != 9 {
			t.Fatalf("order %v then %v: holder %v, want 9 (it still announces the address)", order[0].Origin, order[1].Origin, id)
		}
	}
	c, _, _ := LoadClaims("")
	for i := 2; i < 10; i++ {
		c.Observe([]Announce{ann(5, fmt.Sprintf("10.0.0.%d/24", i))}, now.Add(time.Duration(i)*time.Minute))
	}
	if held := c.Held(); len(held) != 1 {
		t.Fatalf("a node cycling through addresses holds %d of them (%v), want 1", len(held), held)
	}
}

// TestClaimsSubnetCannotTakeAddress: a member announcing a held virtual IP as a /32 subnet, or a subnet
// around it, gets no route for it, with the holder present or absent.
func TestClaimsSubnetCannotTakeAddress(t *testing.T) {
	const self, holder, attacker = 1, 9, 3
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	me := ann(self, "10.0.0.1/24", nb(holder, 100), nb(attacker, 100))
	h := ann(holder, "10.0.0.2/24", nb(self, 100))
	for _, sub := range []string{"10.0.0.2/32", "10.0.0.0/28"} {
		a := ann(attacker, "10.0.0.3/24", nb(self, 100))
		a.Subnets = []Subnet{{Prefix: netip.MustParsePrefix(sub)}}
		c, _, _ := LoadClaims("")
		c.Observe([]Announce{me, h}, now)
		for _, anns := range [][]Announce{{me, h, a}, {me, a}} {
			c.Observe(anns, now)
			for i := 0; i < 20; i++ { // map order must not matter
				r, ok := ComputeWithClaims(self, anns, c).Lookup(netip.MustParseAddr("10.0.0.2"))
				if ok && r.Node == attacker {
					t.Fatalf("subnet %s (holder present: %v): 10.0.0.2 routed to the attacker", sub, len(anns) == 3)
				}
			}
		}
	}
}

func writeFileForTest(path, text string) error { return os.WriteFile(path, []byte(text), 0o600) }
