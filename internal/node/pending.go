package node

// Handshakes in flight and the admission of unauthenticated input. Everything here is reachable by a
// packet nobody has authenticated yet, so every table has a stated bound and every costly step a rate:
//
//	message 1 from ip  -> per source IP rate (20/s, burst 5)   -> handshake_rate
//	                   -> over UDP under load (cookieLoad responders pending): a valid cookie for
//	                      ip:port, else a cookie reply and nothing more -> handshake_cookie
//	                   -> responders pending from that ip < 16, in all < 1024 -> handshake_flood
//	                   -> session.Respond: replayed (InitCache) or stale clock, before any DH
//	data for an unknown index from ip -> at most one handshake back per source IP per second and
//	                   hintRate in all (a restarted node's peers still use old keys) -> else dropped
//
// A routed handshake (through the mesh, e2e.go) has no underlay address; it is limited per source node
// by the same per-address rate, under an address made from the node ID.

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"golang.zx2c4.com/wireguard/ratelimiter"

	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/underlay"
)

const (
	// maxPending bounds the responder handshakes waiting for their message 3, in all and per source IP.
	maxPending      = 1024
	maxPendingPerIP = 16
	// hintRate bounds the handshakes this node starts towards senders of data for a session it does not
	// know, per second in all (and one per source IP per second).
	hintRate = 50
	// cookieLoad is the number of responders pending from which this node is under load: a message 1
	// then needs a valid cookie for its source address (session/cookie.go), else it gets a cookie reply
	// and nothing else. It also bounds what senders that cannot receive at their address (forged
	// sources) can put in the table.
	cookieLoad = 128
	// maxCookieResends bounds how often one handshake sends message 1 again with a fresh cookie.
	maxCookieResends = 2
)

// errPendingFull: the table has no room for another responder handshake from that source.
var errPendingFull = errors.New("too many handshakes in flight")

// handshakeTable holds the handshakes in flight and the admission state, with its own lock. It is held
// while reserve asks the peer and e2e tables whether an index is taken (they never take it); never
// otherwise while calling out of this file.
type handshakeTable struct {
	mu         sync.Mutex
	pending    map[uint32]*pendingHandshake
	perIP      map[netip.Addr]int       // responders pending, by source address
	hintAt     map[netip.Addr]time.Time // when a handshake last started for an unknown session (or held until)
	mismatchAt map[netip.Addr]time.Time // rate limit of the secret-mismatch and clock log lines

	inits ratelimiter.Ratelimiter // message 1 per source address
	hints *rate.Limiter           // handshakes for unknown sessions, in all

	responders int                            // entries with responder set
	loadAt     int                            // responders from which this node is under load (cookieLoad)
	cookies    map[netip.AddrPort]cookieEntry // cookies responders gave this node, by their address
}

// cookieEntry is a cookie a responder gave this node, and until when to use it.
type cookieEntry struct {
	cookie [session.MACLen]byte
	until  time.Time
}

func newHandshakeTable() *handshakeTable {
	t := &handshakeTable{
		pending:    make(map[uint32]*pendingHandshake),
		perIP:      make(map[netip.Addr]int),
		hintAt:     make(map[netip.Addr]time.Time),
		mismatchAt: make(map[netip.Addr]time.Time),
		hints:      rate.NewLimiter(hintRate, hintRate),
		loadAt:     cookieLoad,
		cookies:    make(map[netip.AddrPort]cookieEntry),
	}
	return t
}

// start starts the rate limiter (and its collector goroutine); close stops it. Call start before the
// first packet arrives.
func (t *handshakeTable) start() { t.inits.Init() }
func (t *handshakeTable) close() { t.inits.Close() }

// sourceOf is the address a handshake message is accounted to: the underlay source, or for a routed one
// an address made from the source node's ID.
func sourceOf(from underlay.Link) netip.Addr {
	if rl, ok := from.(*routedLink); ok {
		var a [16]byte
		a[0], a[1] = 0xfd, 'w' // a unique local address no underlay uses for this
		binary.BigEndian.PutUint64(a[8:], uint64(rl.dst))
		return netip.AddrFrom16(a)
	}
	return from.RemoteAddr().Addr()
}

// allowInit reports whether a message 1 from src may be worked on now (its per-address rate).
func (t *handshakeTable) allowInit(src netip.Addr) bool { return t.inits.Allow(src) }

// reserve puts ph in the table under a fresh local index that used does not know either and returns
// the index. A responder counts against the caps of its source address and of the table.
func (t *handshakeTable) reserve(ph *pendingHandshake, used func(uint32) bool) (uint32, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ph.responder {
		if len(t.pending) >= maxPending || t.perIP[ph.src] >= maxPendingPerIP {
			return 0, errPendingFull
		}
		t.perIP[ph.src]++
		t.responders++
	}
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		i := binary.LittleEndian.Uint32(b[:])
		if i == 0 || used(i) {
			continue
		}
		if _, pend := t.pending[i]; !pend {
			t.pending[i] = ph
			return i, nil
		}
	}
}

// get returns the handshake with local index i, without removing it.
func (t *handshakeTable) get(i uint32) *pendingHandshake {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending[i]
}

// remove takes the handshake with index i out of the table if it is still ph.
func (t *handshakeTable) remove(i uint32, ph *pendingHandshake) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending[i] == ph {
		t.drop(i, ph)
	}
}

// drop removes an entry; t.mu held.
func (t *handshakeTable) drop(i uint32, ph *pendingHandshake) {
	delete(t.pending, i)
	if ph.responder {
		t.responders--
		if t.perIP[ph.src]--; t.perIP[ph.src] <= 0 {
			delete(t.perIP, ph.src)
		}
	}
}

// len returns the number of handshakes in flight.
func (t *handshakeTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}

// expire removes the handshakes older than timeout and returns them, and forgets old rate-limit
// entries.
func (t *handshakeTable) expire(now time.Time, timeout time.Duration) []*pendingHandshake {
	t.mu.Lock()
	defer t.mu.Unlock()
	var failed []*pendingHandshake
	for i, ph := range t.pending {
		if now.Sub(ph.started) > timeout {
			t.drop(i, ph)
			failed = append(failed, ph)
		}
	}
	for a, at := range t.mismatchAt {
		if now.Sub(at) > time.Minute {
			delete(t.mismatchAt, a)
		}
	}
	for a, at := range t.hintAt {
		if now.Sub(at) > 10*time.Second {
			delete(t.hintAt, a)
		}
	}
	for a, c := range t.cookies {
		if now.After(c.until) {
			delete(t.cookies, a)
		}
	}
	return failed
}

// allowHint reports whether a handshake may start towards src for a session this node does not know:
// at most one per source address per second (none while a refusal holds it off) and hintRate in all.
func (t *handshakeTable) allowHint(src netip.Addr, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if at, ok := t.hintAt[src]; ok && now.Sub(at) < time.Second {
		return false
	}
	if !t.hints.AllowN(now, 1) {
		return false
	}
	t.hintAt[src] = now
	return true
}

// holdHints stops handshakes for unknown sessions towards src until the given time.
func (t *handshakeTable) holdHints(src netip.Addr, until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hintAt[src] = until
}

// logDue reports whether a warning about src may be logged now (once per 10 s per address).
func (t *handshakeTable) logDue(src netip.Addr, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if at, ok := t.mismatchAt[src]; ok && now.Sub(at) <= 10*time.Second {
		return false
	}
	t.mismatchAt[src] = now
	return true
}

// underLoad reports whether a message 1 now needs a cookie.
func (t *handshakeTable) underLoad() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.responders >= t.loadAt
}

// cookieFor returns the cookie a responder at a gave this node, if it is still fresh.
func (t *handshakeTable) cookieFor(a netip.AddrPort, now time.Time) *[session.MACLen]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.cookies[a]; ok && now.Before(c.until) {
		return &c.cookie
	}
	return nil
}

// setCookie remembers a cookie from the responder at a (one per address: only replies to this node's
// own handshakes, checked with the network key, get here).
func (t *handshakeTable) setCookie(a netip.AddrPort, c [session.MACLen]byte, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cookies[a] = cookieEntry{cookie: c, until: now.Add(session.CookieLifetime - 10*time.Second)}
}
