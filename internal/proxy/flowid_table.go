package proxy

// The flow table says which TCP flows belong to netstack. The node's TUN
// reader asks Owns for every TCP packet it reads; a hit goes to Inject, a miss
// to the plain tunnel. An entry is created by Claim (source role, before the
// first SYN is injected) or by Dial (destination role, before the SYN leaves)
// and removed by the reaper once netstack has released the endpoint
// (TIME_WAIT included), or when a claimed SYN never reached the forwarder.

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// FlowState is one flow netstack owns, as listed by Stack.Flows.
type FlowState struct {
	ID FlowID
	// State is "claimed" (SYN not yet seen by netstack), "forwarding"
	// (Forward is deciding, or the handshake with the client is under way),
	// or the endpoint's TCP state in lower case: "syn-sent", "established",
	// "fin-wait-1", "fin-wait-2", "close-wait", "closing", "last-ack",
	// "time-wait", "closed".
	State string
	// Since is when the entry was created.
	Since time.Time
}

// flowPhase is where an entry is before it has an endpoint.
type flowPhase uint8

const (
	phaseClaimed    flowPhase = iota // Claim called; the forwarder has not seen the SYN
	phaseForwarding                  // a Request exists; Accept or Reject pending
	phaseEndpoint                    // ep is set
)

// flowEntry is one flow. Its fields change only under flowTable.mu (write).
type flowEntry struct {
	since time.Time
	phase flowPhase
	ep    tcpip.Endpoint // set in phaseEndpoint
	// rec is the proxied flow's record while the Proxy pipes it (nil before and after): the table is
	// the one registry of flows, `weft proxy` lists these.
	rec atomic.Pointer[Flow]
}

// live reports whether netstack still holds the flow. An endpoint in
// CLOSED or ERROR has left netstack's demultiplexer: packets for it would
// be answered with a RST.
func (e *flowEntry) live() bool {
	if e.phase != phaseEndpoint {
		return true
	}
	s := tcp.EndpointState(e.ep.State())
	return s != tcp.StateClose && s != tcp.StateError
}

// flowTable maps client->server keys to entries. The zero value is not
// usable; use newFlowTable.
type flowTable struct {
	mu    sync.RWMutex
	flows map[flowKey]*flowEntry
}

func newFlowTable() *flowTable {
	return &flowTable{flows: make(map[flowKey]*flowEntry)}
}

// owns reports whether the packet key k (source first) or its reverse names
// a live flow. It does not allocate.
func (t *flowTable) owns(k flowKey) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.flows[k]
	if !ok {
		e, ok = t.flows[k.reversed()]
	}
	return ok && e.live()
}

// claim adds a claimed entry for k unless one exists.
func (t *flowTable) claim(k flowKey, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.flows[k]; !ok {
		t.flows[k] = &flowEntry{since: now, phase: phaseClaimed}
	}
}

// forwarding records that the forwarder made a request for k and returns its
// entry. An older entry (a claim, or an endpoint whose TIME_WAIT a new SYN
// ended) is replaced: the flow now belongs to the request.
func (t *flowTable) forwarding(k flowKey, now time.Time) *flowEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.flows[k]
	if ok && e.phase == phaseClaimed {
		e.phase = phaseForwarding
		return e
	}
	e = &flowEntry{since: now, phase: phaseForwarding}
	t.flows[k] = e
	return e
}

// addDial adds an entry for a dial with endpoint ep. It returns false when
// a live entry for k exists.
func (t *flowTable) addDial(k flowKey, ep tcpip.Endpoint, now time.Time) (*flowEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.flows[k]; ok && e.live() {
		return nil, false
	}
	e := &flowEntry{since: now, phase: phaseEndpoint, ep: ep}
	t.flows[k] = e
	return e, true
}

// setEndpoint attaches ep to e if e is still k's entry.
func (t *flowTable) setEndpoint(k flowKey, e *flowEntry, ep tcpip.Endpoint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.flows[k] == e {
		e.phase, e.ep = phaseEndpoint, ep
	}
}

// remove deletes k if e is still its entry.
func (t *flowTable) remove(k flowKey, e *flowEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.flows[k] == e {
		delete(t.flows, k)
	}
}

// reap removes the entries netstack released and the claims older than
// claimTTL whose SYN never reached the forwarder. It returns how many it
// removed.
func (t *flowTable) reap(now time.Time, claimTTL time.Duration) int {
	dead := func(e *flowEntry) bool {
		return !e.live() || e.phase == phaseClaimed && now.Sub(e.since) > claimTTL
	}
	t.mu.RLock()
	found := false
	for _, e := range t.flows {
		if dead(e) {
			found = true
			break
		}
	}
	t.mu.RUnlock()
	if !found {
		return 0
	}
	n := 0
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range t.flows {
		if dead(e) {
			delete(t.flows, k)
			n++
		}
	}
	return n
}

// endpoints returns the endpoints in the table.
func (t *flowTable) endpoints() []tcpip.Endpoint {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var eps []tcpip.Endpoint
	for _, e := range t.flows {
		if e.phase == phaseEndpoint {
			eps = append(eps, e.ep)
		}
	}
	return eps
}

// list returns the live flows, oldest first.
func (t *flowTable) list() []FlowState {
	t.mu.RLock()
	out := make([]FlowState, 0, len(t.flows))
	for k, e := range t.flows {
		if !e.live() {
			continue
		}
		out = append(out, FlowState{ID: k.id(), State: e.state(), Since: e.since})
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// state names the entry's state for FlowState.
func (e *flowEntry) state() string {
	switch e.phase {
	case phaseClaimed:
		return "claimed"
	case phaseForwarding:
		return "forwarding"
	}
	switch tcp.EndpointState(e.ep.State()) {
	case tcp.StateInitial, tcp.StateBound, tcp.StateConnecting, tcp.StateSynSent:
		return "syn-sent"
	case tcp.StateSynRecv:
		return "syn-received"
	case tcp.StateEstablished:
		return "established"
	case tcp.StateFinWait1:
		return "fin-wait-1"
	case tcp.StateFinWait2:
		return "fin-wait-2"
	case tcp.StateCloseWait:
		return "close-wait"
	case tcp.StateClosing:
		return "closing"
	case tcp.StateLastAck:
		return "last-ack"
	case tcp.StateTimeWait:
		return "time-wait"
	default:
		return "closed"
	}
}

// records returns the flows the Proxy is piping now, oldest first.
func (t *flowTable) records() []*Flow {
	t.mu.RLock()
	out := make([]*Flow, 0, len(t.flows))
	for _, e := range t.flows {
		if r := e.rec.Load(); r != nil {
			out = append(out, r)
		}
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}
