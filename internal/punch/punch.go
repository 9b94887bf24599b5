// Package punch decides when a node tries to reach another node directly through NATs, and where to
// send: the path state machine of NAT traversal. It does no I/O; the node gives it, every tick, the
// nodes it knows (their announced endpoints and whether a direct session is up) and sends a handshake
// message 1 to every address Tick returns. A handshake that completes, from whichever address it came
// (a peer-reflexive one behind a symmetric NAT too), makes the pair direct.
//
//	relayed --(endpoints known, retry time reached)--> punching: a round of handshakes to every
//	        endpoint each Interval, for Window
//	punching --(direct session up)--> direct   (time to direct recorded)
//	punching --(Window over)--> relayed, retry after Retry·2^(failures-1), at most MaxRetry
//	direct --(session lost)--> relayed, retry at once (the mapping may have been flushed)
//	new endpoints announced --> failures forgotten, retry at once
package punch

import (
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/weft-vpn/weft/internal/session"
)

// Defaults of Config.
const (
	DefaultWindow   = 5 * time.Second
	DefaultInterval = 250 * time.Millisecond
	DefaultRetry    = 5 * time.Second
	DefaultMaxRetry = time.Minute
	// DefaultMaxAttempts bounds the attempts under way at once: each round of one costs a handshake
	// per endpoint, and each handshake a pending entry until it times out.
	DefaultMaxAttempts = 16
)

// Config tunes a Puncher; zero fields take the defaults.
type Config struct {
	// Window is how long one attempt sends handshakes (both sides' attempts must overlap in it).
	Window time.Duration
	// Interval is the time between two rounds of one attempt.
	Interval time.Duration
	// Retry is the wait after the first failed attempt; it doubles with each failure up to MaxRetry.
	Retry, MaxRetry time.Duration
	// MaxAttempts is how many nodes are punched to at once; the others wait for a free place.
	MaxAttempts int
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Window, DefaultWindow)
	def(&c.Interval, DefaultInterval)
	def(&c.Retry, DefaultRetry)
	def(&c.MaxRetry, DefaultMaxRetry)
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	return c
}

// State of the path to one node.
type State uint8

// Path states.
const (
	Relayed State = iota
	Punching
	Direct
)

func (s State) String() string {
	switch s {
	case Punching:
		return "punching"
	case Direct:
		return "direct"
	}
	return "relayed"
}

// Target is a node as the node sees it now.
type Target struct {
	Node session.NodeID
	// Endpoints are the addresses the node announced.
	Endpoints []netip.AddrPort
	// Direct: this node has a live direct session with it.
	Direct bool
}

// Send is one handshake to start: to node Node at To.
type Send struct {
	Node session.NodeID
	To   netip.AddrPort
}

// Path is what the Puncher knows about the path to one node.
type Path struct {
	State State
	// Endpoints are the addresses punched to.
	Endpoints []netip.AddrPort
	// Attempts and Failures count attempts since the node became known, and failed ones in a row.
	Attempts, Failures int
	// Rounds counts the handshake rounds sent (each to every endpoint).
	Rounds int
	// TimeToDirect is how long the last upgrade took, from known through relays (or the direct session
	// lost) to direct, whichever side's handshake made it; 0 when it never happened.
	TimeToDirect time.Duration
	// NextAttempt is when the next attempt starts (relayed only).
	NextAttempt time.Time

	relayedSince time.Time // start of the relayed stretch TimeToDirect is measured from
	wasRelayed   bool      // the node was reached through relays before it was direct
	attemptStart time.Time
	nextRound    time.Time
}

// Puncher holds the paths of one node. It is safe for concurrent use.
type Puncher struct {
	cfg   Config
	mu    sync.Mutex
	paths map[session.NodeID]*Path
}

// New returns a Puncher.
func New(cfg Config) *Puncher {
	return &Puncher{cfg: cfg.withDefaults(), paths: map[session.NodeID]*Path{}}
}

// Tick brings the paths up to date with targets (every node this node knows, itself excluded) at time
// now and returns the handshakes to send now. Nodes not in targets are forgotten.
func (p *Puncher) Tick(now time.Time, targets []Target) []Send {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Send
	seen := make(map[session.NodeID]bool, len(targets))
	punching := 0
	for _, st := range p.paths {
		if st.State == Punching {
			punching++
		}
	}
	for _, t := range targets {
		seen[t.Node] = true
		st := p.paths[t.Node]
		if st == nil {
			st = &Path{relayedSince: now, NextAttempt: now, wasRelayed: !t.Direct}
			if t.Direct {
				st.State = Direct
			}
			p.paths[t.Node] = st
		}
		eps := normalize(t.Endpoints)
		if !slices.Equal(eps, st.Endpoints) {
			st.Endpoints = eps
			st.Failures = 0
			st.NextAttempt = now // new addresses: worth a try at once
		}
		if t.Direct {
			if st.State != Direct {
				if st.wasRelayed {
					st.TimeToDirect = now.Sub(st.relayedSince)
				}
				st.State, st.Failures = Direct, 0
			}
			continue
		}
		if st.State == Direct { // lost: the mapping may be gone, try again at once
			st.State, st.relayedSince, st.NextAttempt, st.wasRelayed = Relayed, now, now, true
		}
		if len(st.Endpoints) == 0 {
			st.State = Relayed
			continue
		}
		if st.State == Relayed && !now.Before(st.NextAttempt) && punching < p.cfg.MaxAttempts {
			st.State, st.attemptStart, st.nextRound = Punching, now, now
			st.Attempts++
			punching++
		}
		if st.State != Punching {
			continue
		}
		if now.Sub(st.attemptStart) >= p.cfg.Window {
			st.Failures++
			st.State = Relayed
			punching--
			st.NextAttempt = now.Add(p.backoff(st.Failures))
			continue
		}
		if !now.Before(st.nextRound) {
			for _, e := range st.Endpoints {
				out = append(out, Send{Node: t.Node, To: e})
			}
			st.Rounds++
			st.nextRound = now.Add(p.cfg.Interval)
		}
	}
	for id := range p.paths {
		if !seen[id] {
			delete(p.paths, id)
		}
	}
	return out
}

// backoff is the wait after the n-th failure in a row.
func (p *Puncher) backoff(n int) time.Duration {
	d := p.cfg.Retry
	for i := 1; i < n && d < p.cfg.MaxRetry; i++ {
		d *= 2
	}
	return min(d, p.cfg.MaxRetry)
}

// Path returns the path to node (ok false when unknown).
func (p *Puncher) Path(node session.NodeID) (Path, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.paths[node]
	if st == nil {
		return Path{}, false
	}
	c := *st
	c.Endpoints = slices.Clone(st.Endpoints)
	return c, true
}

func normalize(eps []netip.AddrPort) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(eps))
	for _, e := range eps {
		if e.IsValid() && e.Port() != 0 && e.Addr().Is4() && !e.Addr().IsUnspecified() {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return slices.Compact(out)
}
