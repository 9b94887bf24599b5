package node

// The peer table: the direct peers and the local session indices that name their keypairs, behind one
// lock of their own. The data path reads it once per packet (byIndex: receiver index -> keypair and
// peer); the handshake path installs and retires keypairs (install, down); the timer goroutine walks
// it (each). The peer fields marked "guarded" are guarded by the table's lock; the atomic ones are
// read without it.
//
// Lock order: the table's lock is a leaf for the node's other locks (handshake table, e2e table,
// warnings): it is never held while calling out of this file.

import (
	"sync"
	"time"

	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/underlay"
)

type peerTable struct {
	mu      sync.RWMutex
	peers   map[session.NodeID]*peer
	indices map[uint32]*keyEntry
}

func newPeerTable() *peerTable {
	return &peerTable{peers: make(map[session.NodeID]*peer), indices: make(map[uint32]*keyEntry)}
}

// byIndex returns the keypair with local index i and its peer, or nil.
func (t *peerTable) byIndex(i uint32) *keyEntry {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.indices[i]
}

// hasIndex reports whether i is the local index of a direct session.
func (t *peerTable) hasIndex(i uint32) bool { return t.byIndex(i) != nil }

// get returns the peer with that ID, alive or not, or nil.
func (t *peerTable) get(id session.NodeID) *peer {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.peers[id]
}

// live returns the live peer with that ID, or nil.
func (t *peerTable) live(id session.NodeID) *peer {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if p := t.peers[id]; p != nil && p.alive {
		return p
	}
	return nil
}

// downChan returns the channel closed when the live peer id dies, or nil when it is not alive.
func (t *peerTable) downChan(id session.NodeID) chan struct{} {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if p := t.peers[id]; p != nil && p.alive {
		return p.down
	}
	return nil
}

// each calls fn for every peer (alive or not) under the write lock: fn may change guarded fields, and
// must not call out of the table.
func (t *peerTable) each(fn func(p *peer)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.peers {
		fn(p)
	}
}

// eachRead is each under the read lock: fn only reads.
func (t *peerTable) eachRead(fn func(p *peer)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, p := range t.peers {
		fn(p)
	}
}

// alive returns the live peers.
func (t *peerTable) alive() []*peer {
	var out []*peer
	t.eachRead(func(p *peer) {
		if p.alive {
			out = append(out, p)
		}
	})
	return out
}

// install makes kp the current keypair of its peer (creating the peer on first contact), keeps the
// previous one for packets in flight, and sends over link from now on. It reports whether the peer
// was alive before.
func (t *peerTable) install(kp *session.Keypair, link underlay.Link, h hello, now time.Time) (p *peer, wasAlive bool) {
	id := kp.PeerID()
	t.mu.Lock()
	defer t.mu.Unlock()
	p = t.peers[id]
	if p == nil {
		p = &peer{id: id, down: make(chan struct{})}
		t.peers[id] = p
	}
	if p.prev != nil {
		delete(t.indices, p.prev.LocalIndex())
	}
	p.prev = p.cur.Load()
	p.cur.Store(kp)
	t.indices[kp.LocalIndex()] = &keyEntry{kp: kp, peer: p}
	p.link.Store(&linkBox{link})
	p.lastRecv.Store(now.UnixNano())
	p.lastHandshake.Store(now.UnixNano())
	p.handshakes.Add(1)
	p.hello = h
	p.rekeying = false
	wasAlive = p.alive
	p.alive = true
	if !wasAlive {
		p.down = make(chan struct{})
		p.lastPing = time.Time{}
		p.nRTTs = 0 // a new path (after a NAT rebinding, say): measure it afresh
		p.rttUS.Store(0)
		p.costRTTUS.Store(0)
	}
	return p, wasAlive
}

// down retires a live peer's keys and closes its down channel. It reports false when the peer was not
// alive (someone else took it down).
func (t *peerTable) down(p *peer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !p.alive {
		return false
	}
	p.alive = false
	if kp := p.cur.Swap(nil); kp != nil {
		delete(t.indices, kp.LocalIndex())
	}
	if p.prev != nil {
		delete(t.indices, p.prev.LocalIndex())
		p.prev = nil
	}
	close(p.down)
	return true
}

// forget removes the peers dead for longer than after and returns the IDs of those that remain.
func (t *peerTable) forget(now time.Time, after time.Duration) map[session.NodeID]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	known := make(map[session.NodeID]bool, len(t.peers))
	for id, p := range t.peers {
		if !p.alive && now.Sub(time.Unix(0, p.lastRecv.Load())) > after {
			delete(t.peers, id)
			continue
		}
		known[id] = true
	}
	return known
}

// pongFor returns when the ping with sequence number seq left towards p, once: a second pong for it
// (a duplicate or a replay) gets false, as does one for a ping never sent.
func (t *peerTable) pongFor(p *peer, seq uint32) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &p.pingsSent[seq%uint32(len(p.pingsSent))]
	if s.seq != seq || s.at.IsZero() {
		return time.Time{}, false
	}
	at := s.at
	s.at = time.Time{}
	return at, true
}

// rttWindow is how many round trips the link cost is the minimum of (one a second: the last 8 s).
const rttWindow = 8

// addRTT records one round trip of p and returns the smallest of the last rttWindow.
func (t *peerTable) addRTT(p *peer, us int64) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	p.rtts[p.nRTTs%rttWindow] = us
	p.nRTTs++
	m := us
	for _, r := range p.rtts[:min(p.nRTTs, rttWindow)] {
		m = min(m, r)
	}
	return m
}

// hostname returns the hostname p gave in its last handshake.
func (t *peerTable) hostname(p *peer) string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return p.hello.Hostname
}

// add puts p in the table as it is (tests).
func (t *peerTable) add(p *peer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.peers[p.id] = p
}
