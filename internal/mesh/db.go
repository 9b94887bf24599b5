package mesh

import (
	"sync"
	"time"

	"github.com/weft-vpn/weft/internal/session"
)

// MaxAge is how long an Announce lives without being refreshed by its origin.
const MaxAge = 60 * time.Second

// RefreshInterval is how often a node re-floods its own Announce even when nothing changed.
const RefreshInterval = 20 * time.Second

type entry struct {
	a    Announce
	seen time.Time
}

// DB is the link-state database: the newest Announce of every known origin. It is safe for concurrent use.
type DB struct {
	self session.NodeID

	mu      sync.Mutex
	entries map[session.NodeID]entry
}

// NewDB returns an empty database for the node self.
func NewDB(self session.NodeID) *DB {
	return &DB{self: self, entries: make(map[session.NodeID]entry)}
}

// Update stores a if it is newer than what the database holds for its origin and reports whether it was
// stored (the caller then floods it to its other neighbours). An Announce that claims to come from this
// node but was not made by it (a stale one from before a restart) is refused.
func (db *DB) Update(a Announce, now time.Time) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	if e, ok := db.entries[a.Origin]; ok && e.a.Seq >= a.Seq {
		return false
	}
	db.entries[a.Origin] = entry{a: a, seen: now}
	return true
}

// SetSelf stores this node's own Announce (always accepted, it is the authority on itself).
func (db *DB) SetSelf(a Announce, now time.Time) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.entries[db.self] = entry{a: a, seen: now}
}

// Get returns the Announce of origin, if known.
func (db *DB) Get(origin session.NodeID) (Announce, bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	e, ok := db.entries[origin]
	return e.a, ok
}

// Expire forgets announcements not refreshed within MaxAge (never this node's own) and reports whether
// any was removed.
func (db *DB) Expire(now time.Time) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	removed := false
	for id, e := range db.entries {
		if id != db.self && now.Sub(e.seen) > MaxAge {
			delete(db.entries, id)
			removed = true
		}
	}
	return removed
}

// All returns a copy of every stored Announce.
func (db *DB) All() []Announce {
	db.mu.Lock()
	defer db.mu.Unlock()
	out := make([]Announce, 0, len(db.entries))
	for _, e := range db.entries {
		out = append(out, e.a)
	}
	return out
}
