package session

// Freshness of handshake message 1. Message 1 of XXpsk0 carries only the initiator's ephemeral key and a
// payload encrypted under the network key, so a captured one can be replayed at will, and answering it
// costs the responder three X25519 operations. Each message 1 therefore carries the initiator's clock
// (unix nanoseconds, inside the encrypted payload, so it cannot be changed without the network key),
// and the responder, before any Diffie-Hellman work:
//
//	checks its ephemeral key against the InitCache (a message 1 seen before: ErrReplayedInit) - free,
//	decrypts the payload (hash and AEAD only) and checks the clock is within MaxClockSkew of its own
//	(ErrStaleInit), then records the ephemeral key until the timestamp leaves the window.
//
// So a replay is refused at once while it is remembered, and by its timestamp afterwards.

import (
	"sync"
	"time"
)

// MaxClockSkew is how far the clock in a handshake's first message may be from the responder's clock.
// Nodes whose clocks differ by more cannot form sessions (the responder logs by how much).
const MaxClockSkew = 2 * time.Minute

// InitCacheSize is how many first messages an InitCache remembers at most. Entries leave when their
// timestamp ages out of the window; a full cache forgets its oldest entry first (a replay of that one
// is then refused only by its timestamp, once it is older than MaxClockSkew).
const InitCacheSize = 16384

// InitCache remembers the ephemeral keys of recent first handshake messages. The zero value is not
// ready; use NewInitCache. It is safe for concurrent use.
type InitCache struct {
	mu   sync.Mutex
	seen map[[32]byte]int64 // ephemeral key -> unix nanos after which it can be forgotten
	ring [][32]byte         // insertion order, for eviction
	head int                // index of the oldest entry in ring
	n    int                // entries in ring
}

// NewInitCache returns an empty cache for up to size entries (InitCacheSize when size <= 0).
func NewInitCache(size int) *InitCache {
	if size <= 0 {
		size = InitCacheSize
	}
	return &InitCache{seen: make(map[[32]byte]int64), ring: make([][32]byte, size)}
}

// Len returns the number of remembered first messages.
func (c *InitCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// seenBefore reports whether ephemeral key e is remembered (and not yet expired at now).
func (c *InitCache) seenBefore(e [32]byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.seen[e]
	return ok && now.UnixNano() <= exp
}

// add remembers e until expiry, evicting the oldest entries that expired or, when full, the oldest one.
func (c *InitCache) add(e [32]byte, expiry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[e]; ok {
		c.seen[e] = expiry.UnixNano()
		return
	}
	size := len(c.ring)
	for c.n > 0 {
		old := c.ring[c.head]
		if c.n < size && c.seen[old] >= now.UnixNano() {
			break // the oldest is still live and there is room
		}
		delete(c.seen, old)
		c.head = (c.head + 1) % size
		c.n--
	}
	c.ring[(c.head+c.n)%size] = e
	c.n++
	c.seen[e] = expiry.UnixNano()
}
