package session

import "errors"

// Sentinel errors. Returned errors wrap them (test with errors.Is), except on
// the data path (Keypair.Seal, Keypair.Open), which returns them unwrapped so
// that it never allocates.
var (
	// ErrPSKMismatch means a handshake init did not decrypt with our
	// pre-shared key: the peer uses a different network name or secret (or
	// the packet was corrupted in transit).
	ErrPSKMismatch = errors.New("pre-shared key mismatch: the peer uses a different network name or secret")
	// ErrReplay means a data packet's counter was already received or is
	// older than the replay window.
	ErrReplay = errors.New("replayed or too old packet counter")
	// ErrMalformed means a packet is too short, has the wrong type or
	// reserved bits, or carries indices or fields that do not fit the
	// session it was given to.
	ErrMalformed = errors.New("malformed packet")
	// ErrDecrypt means a packet failed authentication: wrong key, tampered
	// or corrupted bytes.
	ErrDecrypt = errors.New("packet failed authentication")
	// ErrKeyExhausted means a keypair has used all RejectAfterMessages
	// counters; the node must complete a new handshake.
	ErrKeyExhausted = errors.New("keypair exhausted its counters: a new handshake is needed")
	// ErrReplayedInit means a handshake's first message was seen before (InitCache): a replay.
	ErrReplayedInit = errors.New("replayed handshake init")
	// ErrStaleInit means a handshake's first message carries a clock more than MaxClockSkew from ours: a
	// replay of an old one, or the two nodes' clocks differ (check NTP).
	ErrStaleInit = errors.New("handshake init timestamp outside the clock window")
)
