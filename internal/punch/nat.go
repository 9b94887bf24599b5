package punch

// NAT classification from what peers observe. Every peer a node has a UDP session with tells it the
// source address it sees the node's packets come from (its public mapping, when there is a NAT). The
// mapping behaviour follows from comparing those reports:
//
//	a report equal to one of the node's own addresses     -> no NAT ("public")
//	two observers (distinct ip:port), the same mapping     -> endpoint-independent mapping ("cone")
//	two observers, different mappings                      -> address-dependent mapping ("symmetric")
//	fewer than two observers                               -> "unknown"
//
// Reports from observers on one of the node's own networks (a LAN neighbour) say nothing about the NAT
// and are not counted.
// Filtering (which unsolicited packets the NAT lets in) is not probed: punching works the same for
// every cone filter, because both sides send at once.

import (
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"
)

// NAT types, as Classify names them.
const (
	NATUnknown   = "unknown"
	NATPublic    = "public"
	NATCone      = "cone"
	NATSymmetric = "symmetric"
)

// ObservationTTL is how long a report counts.
const ObservationTTL = 2 * time.Minute

// Observations are the mappings this node's peers reported. It is safe for concurrent use.
type Observations struct {
	mu  sync.Mutex
	obs map[netip.AddrPort]observation // by observer
}

type observation struct {
	mapped netip.AddrPort
	at     time.Time
}

// Add records that the peer at observer (its underlay address) sees this node at mapped. It reports
// whether the set of mapped addresses changed.
func (o *Observations) Add(observer, mapped netip.AddrPort, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.obs == nil {
		o.obs = map[netip.AddrPort]observation{}
	}
	before := o.mappedLocked(now)
	o.obs[observer] = observation{mapped: mapped, at: now}
	return !slices.Equal(before, o.mappedLocked(now))
}

// Mapped returns the distinct mapped addresses reported within ObservationTTL, sorted.
func (o *Observations) Mapped(now time.Time) []netip.AddrPort {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mappedLocked(now)
}

func (o *Observations) mappedLocked(now time.Time) []netip.AddrPort {
	var out []netip.AddrPort
	for k, v := range o.obs {
		if now.Sub(v.at) > ObservationTTL {
			delete(o.obs, k)
			continue
		}
		out = append(out, v.mapped)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return slices.Compact(out)
}

// Classify names the NAT in front of a node with the given own addresses (its listeners' local
// addresses) on the given own networks, from the reports within ObservationTTL.
func (o *Observations) Classify(own []netip.AddrPort, lans []netip.Prefix, now time.Time) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.mappedLocked(now) // expire
	mapped := map[netip.AddrPort]bool{}
	observers := 0
	for k, v := range o.obs {
		if slices.ContainsFunc(lans, func(p netip.Prefix) bool { return p.Contains(k.Addr()) }) {
			continue
		}
		if slices.Contains(own, v.mapped) {
			return NATPublic
		}
		mapped[v.mapped] = true
		observers++
	}
	switch {
	case observers < 2:
		return NATUnknown
	case len(mapped) == 1:
		return NATCone
	}
	return NATSymmetric
}
