package session

// Cookies: proof that a handshake's first message really comes from its source address, asked for only
// when the responder is under load (WireGuard's idea, fitted to a network key instead of a responder
// key). Every type-1 packet ends in a 16-byte mac2 trailer, zero when its sender has no cookie:
//
//	type 1 | 1 0 0 0 | sender u32 | noise msg 1 | mac2 [16]
//	type 5 | 5 0 0 0 | receiver u32 | cookie [16] | mac [16]       the cookie reply
//
//	cookie = BLAKE2s-128(key: responder secret, rotated every CookieLifetime; ip [16] | port u16)
//	mac2   = BLAKE2s-128(key: cookie; message 1 without its trailer)
//	mac    = BLAKE2s-128(key: network key; "weft cookie" | reply without mac | message 1 without trailer)
//
// Under load, the responder answers a first message whose mac2 is not valid for its source with a cookie
// reply and does no other work for it; the initiator (the only one that can check the reply's mac: it
// needs the network key and the message it sent) sends the same first message again with mac2. A flood
// from forged source addresses never sees its cookies, so it never reaches the handshake table while
// the responder is loaded. A reply costs two hashes and is smaller than the message it answers.

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/crypto/blake2s"
)

const (
	// TypeCookieReply is the type of a cookie reply packet.
	TypeCookieReply = 5
	// MACLen is the length of the mac2 trailer of a type-1 packet and of a cookie.
	MACLen = 16
	// CookieReplyLen is the length of a cookie reply.
	CookieReplyLen  = cookieHeaderLen + MACLen + MACLen
	cookieHeaderLen = 8
	// CookieLifetime is how long a responder's cookie secret lives (a cookie stays valid for one more).
	CookieLifetime = 2 * time.Minute
)

var cookieLabel = []byte("weft cookie")

// WithMAC2 returns msg1 (a type-1 packet from NewInitiator) with its mac2 trailer: computed from cookie,
// or zero when cookie is nil.
func WithMAC2(msg1 []byte, cookie *[MACLen]byte) []byte {
	out := make([]byte, len(msg1), len(msg1)+MACLen)
	copy(out, msg1)
	if cookie == nil {
		return append(out, make([]byte, MACLen)...)
	}
	return append(out, mac128(cookie[:], msg1)...)
}

// SplitMAC2 splits a received type-1 packet into the message 1 that Respond takes and its mac2
// trailer. ok is false when it is too short to have one.
func SplitMAC2(pkt []byte) (msg1, mac2 []byte, ok bool) {
	if len(pkt) < initHeaderLen+MACLen {
		return nil, nil, false
	}
	return pkt[:len(pkt)-MACLen], pkt[len(pkt)-MACLen:], true
}

// CookieJar is a responder's cookie secret. It is safe for concurrent use.
type CookieJar struct {
	psk [32]byte

	mu      sync.Mutex
	cur     [32]byte
	prev    [32]byte
	rotated time.Time
	hasPrev bool
}

// NewCookieJar returns a jar for the network key psk.
func NewCookieJar(psk [32]byte) *CookieJar { return &CookieJar{psk: psk} }

// secrets returns the current secret (rotating it when due) and the previous one.
func (j *CookieJar) secrets(now time.Time) (cur, prev [32]byte, hasPrev bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.rotated.IsZero() || now.Sub(j.rotated) >= CookieLifetime {
		if !j.rotated.IsZero() {
			j.prev, j.hasPrev = j.cur, now.Sub(j.rotated) < 2*CookieLifetime
		}
		_, _ = rand.Read(j.cur[:])
		j.rotated = now
	}
	return j.cur, j.prev, j.hasPrev
}

func cookieFor(secret [32]byte, src netip.AddrPort) [MACLen]byte {
	var b [18]byte
	a := src.Addr().As16()
	copy(b[:], a[:])
	binary.BigEndian.PutUint16(b[16:], src.Port())
	return [MACLen]byte(mac128(secret[:], b[:]))
}

// Valid reports whether mac2 is the mac of msg1 under a current cookie of src.
func (j *CookieJar) Valid(msg1, mac2 []byte, src netip.AddrPort, now time.Time) bool {
	cur, prev, hasPrev := j.secrets(now)
	c := cookieFor(cur, src)
	if subtle.ConstantTimeCompare(mac128(c[:], msg1), mac2) == 1 {
		return true
	}
	if hasPrev {
		c = cookieFor(prev, src)
		return subtle.ConstantTimeCompare(mac128(c[:], msg1), mac2) == 1
	}
	return false
}

// Reply returns the cookie reply for msg1 (without its trailer) from src.
func (j *CookieJar) Reply(msg1 []byte, src netip.AddrPort, now time.Time) []byte {
	cur, _, _ := j.secrets(now)
	c := cookieFor(cur, src)
	r := make([]byte, cookieHeaderLen, CookieReplyLen)
	r[0] = TypeCookieReply
	if len(msg1) >= initHeaderLen {
		copy(r[4:8], msg1[4:8]) // the initiator's sender index
	}
	r = append(r, c[:]...)
	return append(r, replyMAC(j.psk, r, msg1)...)
}

// OpenCookieReply checks a cookie reply against the network key and the message 1 (without trailer)
// it answers and returns its cookie.
func OpenCookieReply(psk [32]byte, reply, msg1 []byte) (cookie [MACLen]byte, ok bool) {
	if len(reply) != CookieReplyLen || reply[0] != TypeCookieReply || len(msg1) < initHeaderLen {
		return cookie, false
	}
	body := reply[:cookieHeaderLen+MACLen]
	if subtle.ConstantTimeCompare(replyMAC(psk, body, msg1), reply[cookieHeaderLen+MACLen:]) != 1 {
		return cookie, false
	}
	copy(cookie[:], reply[cookieHeaderLen:])
	return cookie, true
}

func replyMAC(psk [32]byte, body, msg1 []byte) []byte {
	h, _ := blake2s.New128(psk[:])
	h.Write(cookieLabel)
	h.Write(body)
	h.Write(msg1)
	return h.Sum(nil)
}

func mac128(key, data []byte) []byte {
	h, err := blake2s.New128(key)
	if err != nil {
		panic(err) // keys here are 16 or 32 bytes
	}
	h.Write(data)
	return h.Sum(nil)
}
