package punch

import (
	"net/netip"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/session"
)

var (
	epA = netip.MustParseAddrPort("198.51.100.7:40001")
	epB = netip.MustParseAddrPort("192.168.1.20:11010")
)

func sends(s []Send) map[netip.AddrPort]int {
	m := map[netip.AddrPort]int{}
	for _, x := range s {
		m[x.To]++
	}
	return m
}

// TestAttemptRoundsAndBackoff: an attempt sends a round to every endpoint each Interval for Window;
// failures back off 5, 10, 20, 40, 60, 60 s; no more than one attempt a minute after 5 failures.
func TestAttemptRoundsAndBackoff(t *testing.T) {
	p := New(Config{})
	now := time.Unix(1000, 0)
	tg := []Target{{Node: 7, Endpoints: []netip.AddrPort{epB, epA, epA, {}}}}
	var rounds int
	attemptsAt := []time.Time{}
	for end := now.Add(10 * time.Minute); now.Before(end); now = now.Add(50 * time.Millisecond) {
		out := p.Tick(now, tg)
		if len(out) > 0 {
			m := sends(out)
			if len(out) != 2 || m[epA] != 1 || m[epB] != 1 {
				t.Fatalf("a round sent %v, want one handshake to each of the 2 valid endpoints", out)
			}
			if st, _ := p.Path(7); st.Rounds == 1 || len(attemptsAt) == 0 || now.Sub(attemptsAt[len(attemptsAt)-1]) > DefaultWindow {
				attemptsAt = append(attemptsAt, now)
			}
			rounds++
		}
	}
	st, _ := p.Path(7)
	if st.State != Relayed || st.Failures != len(attemptsAt) || st.Attempts != len(attemptsAt) {
		t.Fatalf("after 10 min unanswered: %+v, %d attempts seen", st, len(attemptsAt))
	}
	if want := len(attemptsAt) * int(DefaultWindow/DefaultInterval); rounds != want {
		t.Errorf("%d rounds in %d attempts, want %d (Window/Interval each)", rounds, len(attemptsAt), want)
	}
	wantGaps := []time.Duration{10, 15, 25, 45, 65, 65, 65} // Window + backoff, seconds
	for i := 1; i < len(attemptsAt) && i <= len(wantGaps); i++ {
		gap := attemptsAt[i].Sub(attemptsAt[i-1])
		if d := gap - wantGaps[i-1]*time.Second; d < 0 || d > 100*time.Millisecond {
			t.Errorf("attempt %d started %v after the one before, want %v", i+1, gap, wantGaps[i-1]*time.Second)
		}
	}
	// After 5 failures: at most one attempt a minute.
	for i := 6; i < len(attemptsAt); i++ {
		if attemptsAt[i].Sub(attemptsAt[i-1]) < time.Minute {
			t.Errorf("attempts %d and %d within a minute after 5 failures", i, i+1)
		}
	}
}

// TestDirectAndLoss: a direct session ends the attempt and records the time to direct; losing it
// starts again at once; new endpoints reset the backoff.
func TestDirectAndLoss(t *testing.T) {
	p := New(Config{})
	now := time.Unix(1000, 0)
	tg := []Target{{Node: 7, Endpoints: []netip.AddrPort{epA}}}
	if out := p.Tick(now, tg); len(out) != 1 {
		t.Fatalf("first tick with endpoints: %v, want one handshake", out)
	}
	now = now.Add(1200 * time.Millisecond)
	tg[0].Direct = true
	if out := p.Tick(now, tg); len(out) != 0 {
		t.Fatalf("direct: still sending %v", out)
	}
	st, _ := p.Path(7)
	if st.State != Direct || st.TimeToDirect != 1200*time.Millisecond {
		t.Fatalf("after the session came up: %+v, want direct in 1.2s", st)
	}
	now = now.Add(time.Minute)
	tg[0].Direct = false
	if out := p.Tick(now, tg); len(out) != 1 {
		t.Fatalf("direct session lost: %v, want a new attempt at once", out)
	}
	// Let it fail three times, then announce a new endpoint: the next attempt comes at once.
	for i := 0; i < 3; i++ {
		for end := now.Add(time.Minute); now.Before(end); now = now.Add(100 * time.Millisecond) {
			p.Tick(now, tg)
		}
	}
	if st, _ := p.Path(7); st.Failures < 3 || st.State == Direct {
		t.Fatalf("three minutes unanswered: %+v", st)
	}
	now = now.Add(time.Second)
	tg[0].Endpoints = append(tg[0].Endpoints, epB)
	for p.Tick(now, tg) == nil {
		if st, _ := p.Path(7); st.State == Punching { // mid-round: the next round comes within Interval
			now = now.Add(DefaultInterval)
			continue
		}
		t.Fatal("new endpoints announced: no attempt at once")
	}
	if st, _ := p.Path(7); st.Failures != 0 {
		t.Errorf("new endpoints: failures %d, want 0", st.Failures)
	}
	p.Tick(now, nil)
	if _, ok := p.Path(7); ok {
		t.Error("a node no longer known is still tracked")
	}
}

func TestNoEndpointsNoSends(t *testing.T) {
	p := New(Config{})
	now := time.Unix(1000, 0)
	for range 100 {
		if out := p.Tick(now, []Target{{Node: 9}}); len(out) != 0 {
			t.Fatalf("sent %v to a node without endpoints", out)
		}
		now = now.Add(time.Second)
	}
}

func TestClassify(t *testing.T) {
	now := time.Unix(1000, 0)
	own := []netip.AddrPort{netip.MustParseAddrPort("192.168.1.2:11010")}
	lans := []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}
	r1, r2 := netip.MustParseAddrPort("203.0.113.1:11010"), netip.MustParseAddrPort("203.0.113.2:11010")
	m1, m2 := netip.MustParseAddrPort("198.51.100.7:40001"), netip.MustParseAddrPort("198.51.100.7:40002")
	lan := netip.MustParseAddrPort("192.168.1.3:11010")
	for _, c := range []struct {
		name string
		obs  map[netip.AddrPort]netip.AddrPort
		want string
	}{
		{"no report", nil, NATUnknown},
		{"one observer", map[netip.AddrPort]netip.AddrPort{r1: m1}, NATUnknown},
		{"two, same mapping", map[netip.AddrPort]netip.AddrPort{r1: m1, r2: m1}, NATCone},
		{"two, different mappings", map[netip.AddrPort]netip.AddrPort{r1: m1, r2: m2}, NATSymmetric},
		{"seen at its own address", map[netip.AddrPort]netip.AddrPort{r1: own[0]}, NATPublic},
		{"a LAN neighbour does not count", map[netip.AddrPort]netip.AddrPort{r1: m1, lan: own[0]}, NATUnknown},
	} {
		var o Observations
		for k, v := range c.obs {
			o.Add(k, v, now)
		}
		if got := o.Classify(own, lans, now); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	var o Observations
	if !o.Add(r1, m1, now) || o.Add(r2, m1, now) || !o.Add(r2, m2, now) {
		t.Error("Add must report a change of the mapped set only")
	}
	if got := o.Mapped(now.Add(ObservationTTL + time.Second)); len(got) != 0 {
		t.Errorf("reports older than %v still count: %v", ObservationTTL, got)
	}
}

// TestAttemptsBounded: with 100 nodes to punch to, at most MaxAttempts attempts run at once, and every
// node still gets its turn.
func TestAttemptsBounded(t *testing.T) {
	p := New(Config{})
	now := time.Unix(1000, 0)
	var tg []Target
	for i := range 100 {
		tg = append(tg, Target{Node: session.NodeID(i + 1), Endpoints: []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 11010)}})
	}
	tried := map[session.NodeID]bool{}
	for end := now.Add(2 * time.Minute); now.Before(end); now = now.Add(50 * time.Millisecond) {
		nodes := map[session.NodeID]bool{}
		for _, s := range p.Tick(now, tg) {
			nodes[s.Node] = true
			tried[s.Node] = true
		}
		punching := 0
		for _, x := range tg {
			if st, _ := p.Path(x.Node); st.State == Punching {
				punching++
			}
		}
		if punching > DefaultMaxAttempts || len(nodes) > DefaultMaxAttempts {
			t.Fatalf("%d attempts under way, %d nodes sent to in one tick (bound %d)", punching, len(nodes), DefaultMaxAttempts)
		}
	}
	if len(tried) != len(tg) {
		t.Errorf("%d of %d nodes were punched to within 2 minutes", len(tried), len(tg))
	}
}
