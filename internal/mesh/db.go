package mesh

import (
	"sync"
	"time"

	"github.com/weft-vpn/weft/internal/session"
)

// MaxAge is how long an Announce lives without being refreshed by its origin.
const MaxAge = 60 * time.Second

// MaxOrigins bounds the origins the database holds (this node included). Announcements of further
// origins are refused until some expire: a member can invent origins (each needs only a fresh key),
// and every one costs memory, a share of each recompute and, for its address, a kernel route.
const MaxOrigins = 4096

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
// stored (the caller then floods it to its other neighbours). A new origin beyond MaxOrigins is refused
// (full reports it).
func (db *DB) Update(a Announce, now time.Time) (stored, full bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	e, ok := db.entries[a.Origin]
	if ok && e.a.Seq >= a.Seq {
		return false, false
	}
	if !ok && len(db.entries) >= MaxOrigins {
		return false, true
	}
	db.entries[a.Origin] = entry{a: a, seen: now}
	return true, false
}

// Len returns the number of origins held.
func (db *DB) Len() int {
	db.mu.Lock()
	defer db.mu.Unlock()
	return len(db.entries)
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
