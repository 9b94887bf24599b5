package session

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/flynn/noise"
)

// prologue is mixed into every handshake; a node speaking another protocol
// version fails the handshake.
const prologue = "weft/v3" // v3: relayed traffic in end-to-end sessions

// Config is what both handshake roles need.
type Config struct {
	// Identity is this node's static key pair. Required.
	Identity Identity
	// PSK is the network key from DerivePSK. Nodes with different PSKs
	// fail at message 1 (ErrPSKMismatch on the responder).
	PSK [32]byte
	// AESHardware says whether this node can use AES-GCM fast (see
	// HasAESHardware); false, the zero value, offers ChaCha20-Poly1305 only.
	// AES-256-GCM is used only when both ends set it.
	AESHardware bool
	// Now is the clock stamped into Keypair.Created; nil means time.Now.
	Now func() time.Time
	// Signer is Identity's signing key (Identity.Signer); nil derives it for each handshake.
	Signer *Signer
	// InitCache, on a responder, remembers first messages so that a replayed one is refused before any
	// Diffie-Hellman work (ErrReplayedInit); nil checks only their timestamps (ErrStaleInit).
	InitCache *InitCache
}

func (c *Config) signer() *Signer {
	if c.Signer != nil {
		return c.Signer
	}
	return c.Identity.Signer()
}

func (c *Config) validate() error {
	if c.Identity.Public == ([32]byte{}) {
		return errors.New("session config: Identity is empty; load it with LoadOrCreateIdentity")
	}
	return nil
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// newHandshakeState starts a Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s handshake
// whose ephemeral private key is ephemeral, so the same messages can be
// recomputed (see Initiator.Finish).
func newHandshakeState(cfg *Config, initiator bool, ephemeral *[32]byte) (*noise.HandshakeState, error) {
	id := cfg.Identity
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:           noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s),
		Random:                bytes.NewReader(ephemeral[:]),
		Pattern:               noise.HandshakeXX,
		Initiator:             initiator,
		Prologue:              []byte(prologue),
		PresharedKey:          cfg.PSK[:],
		PresharedKeyPlacement: 0,
		StaticKeypair:         noise.DHKey{Private: id.Private[:], Public: id.Public[:]},
	})
	if err != nil {
		return nil, fmt.Errorf("start noise handshake: %w", err)
	}
	return hs, nil
}

func newEphemeral() ([32]byte, error) {
	var e [32]byte
	if _, err := rand.Read(e[:]); err != nil {
		return e, fmt.Errorf("generate ephemeral key: %w", err)
	}
	return e, nil
}

func checkPayload(name string, p []byte) error {
	if len(p) > MaxHandshakePayload {
		return fmt.Errorf("%s is %d bytes, more than MaxHandshakePayload (%d)", name, len(p), MaxHandshakePayload)
	}
	return nil
}

// Initiator is the initiating side of one handshake, between NewInitiator and
// a successful Finish. It is not safe for concurrent use.
type Initiator struct {
	cfg        Config
	localIndex uint32
	ephemeral  [32]byte
	payload1   []byte // cipher mask + caller payload, as sent in message 1
	offered    uint8
	done       bool
}

// NewInitiator starts a handshake; msg1 is the complete type-1 packet to send.
// payload travels in message 1 encrypted with a key derived from the PSK only
// (no forward secrecy, no peer authentication yet), so it must hold nothing
// sensitive; it may be nil. localIndex is the index the peer will put in its
// packets to us.
func NewInitiator(cfg Config, localIndex uint32, payload []byte) (*Initiator, []byte, error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, err
	}
	if err := checkPayload("handshake init payload", payload); err != nil {
		return nil, nil, err
	}
	eph, err := newEphemeral()
	if err != nil {
		return nil, nil, err
	}
	return newInitiator(cfg, localIndex, payload, eph)
}

// newInitiator is NewInitiator with a given ephemeral private key.
func newInitiator(cfg Config, localIndex uint32, payload []byte, eph [32]byte) (*Initiator, []byte, error) {
	mask := supportedCiphers(cfg.AESHardware)
	p1 := binary.BigEndian.AppendUint64([]byte{mask}, uint64(cfg.now().UnixNano()))
	h := &Initiator{
		cfg:        cfg,
		localIndex: localIndex,
		ephemeral:  eph,
		payload1:   append(p1, payload...),
		offered:    mask,
	}
	_, msg1, err := h.message1()
	if err != nil {
		return nil, nil, err
	}
	return h, msg1, nil
}

// message1 (re)computes the handshake state after message 1 and the type-1
// packet. The result is the same every time, because the ephemeral key and
// the Noise encryption of message 1 are deterministic.
func (h *Initiator) message1() (*noise.HandshakeState, []byte, error) {
	hs, err := newHandshakeState(&h.cfg, true, &h.ephemeral)
	if err != nil {
		return nil, nil, err
	}
	msg1 := appendHandshakeHeader(make([]byte, 0, msg1Overhead+len(h.payload1)), TypeHandshakeInit, h.localIndex, 0)
	msg1, _, _, err = hs.WriteMessage(msg1, h.payload1)
	if err != nil {
		return nil, nil, fmt.Errorf("write handshake init: %w", err)
	}
	return hs, msg1, nil
}

// Finish consumes the responder's type-2 packet and returns the established
// keypair, the type-3 packet to send, and the responder's payload from
// message 2. payload3 travels in message 3, encrypted and authenticated (the
// responder knows who we are only after it).
//
// A msg2 that fails (ErrMalformed: wrong type, length or receiver index;
// ErrDecrypt: failed authentication) leaves the Initiator unchanged, so a
// forged packet cannot abort the handshake and a genuine msg2 may follow.
// After a successful Finish the Initiator refuses further calls.
func (h *Initiator) Finish(msg2 []byte, payload3 []byte) (kp *Keypair, msg3 []byte, peerPayload []byte, err error) {
	if h.done {
		return nil, nil, nil, errors.New("handshake response: this handshake already finished; start a new one")
	}
	if err := checkPayload("handshake final payload", payload3); err != nil {
		return nil, nil, nil, err
	}
	if t, ok := PacketType(msg2); !ok || t != TypeHandshakeResp || len(msg2) < msg2Overhead {
		return nil, nil, nil, fmt.Errorf("handshake response: not a complete type-%d packet (%d bytes): %w", TypeHandshakeResp, len(msg2), ErrMalformed)
	}
	sender := binary.BigEndian.Uint32(msg2[4:8])
	if receiver := binary.BigEndian.Uint32(msg2[8:12]); receiver != h.localIndex {
		return nil, nil, nil, fmt.Errorf("handshake response: receiver index %d, want %d: %w", receiver, h.localIndex, ErrMalformed)
	}
	// Noise mutates its state before a message authenticates, so every
	// attempt starts again from message 1 and failures change nothing.
	hs, _, err := h.message1()
	if err != nil {
		return nil, nil, nil, err
	}
	p2, _, _, err := hs.ReadMessage(nil, msg2[respHeaderLen:])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("handshake response from index %d: %w (%v)", sender, ErrDecrypt, err)
	}
	if len(p2) < 1 {
		return nil, nil, nil, fmt.Errorf("handshake response from index %d: no cipher field: %w", sender, ErrMalformed)
	}
	chosen := CipherID(p2[0])
	if chosen.bit() == 0 || h.offered&chosen.bit() == 0 {
		return nil, nil, nil, fmt.Errorf("handshake response from index %d: peer chose %s, which we did not offer: %w", sender, chosen, ErrMalformed)
	}
	peerStatic := hs.PeerStatic()
	peerSigning, rest, err := readBinding(p2[1:], peerStatic)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("handshake response from index %d: %w", sender, err)
	}
	p3 := h.cfg.signer().appendBinding(make([]byte, 0, bindingLen+len(payload3)), h.cfg.Identity.Public)
	p3 = append(p3, payload3...)
	msg3 = appendHandshakeHeader(make([]byte, 0, msg3Overhead+len(payload3)), TypeHandshakeFinal, h.localIndex, sender)
	msg3, cs1, cs2, err := hs.WriteMessage(msg3, p3)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("write handshake final: %w", err)
	}
	if cs1 == nil || cs2 == nil {
		return nil, nil, nil, errors.New("write handshake final: noise did not complete the handshake")
	}
	kp, err = newKeypair(keypairParams{
		cipher:      chosen,
		sendKey:     cs1.UnsafeKey(),
		recvKey:     cs2.UnsafeKey(),
		localIndex:  h.localIndex,
		remoteIndex: sender,
		peerStatic:  peerStatic,
		peerSigning: peerSigning,
		initiator:   true,
		created:     h.cfg.now(),
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("handshake response from index %d: %w", sender, err)
	}
	h.done = true
	h.ephemeral = [32]byte{}
	return kp, msg3, rest, nil
}

// Responder is the responding side of one handshake, between Respond and a
// successful Finish. It is not safe for concurrent use.
type Responder struct {
	cfg         Config
	localIndex  uint32
	remoteIndex uint32
	ephemeral   [32]byte
	noiseMsg1   []byte // the initiator's Noise message 1, to rebuild hs
	payload2    []byte // cipher + caller payload, as sent in message 2
	chosen      CipherID
	hs          *noise.HandshakeState
	dirty       bool // hs may have been changed by a failed Finish
	done        bool
}

// Respond consumes a type-1 packet and returns the responder state, the
// type-2 packet to send and the initiator's message-1 payload. payload2
// travels in message 2 encrypted to the (not yet authenticated) initiator.
//
// A message 1 that does not authenticate under our PSK gives an error that
// wraps ErrPSKMismatch: the peer's network name or secret differ from ours
// (a corrupted packet looks the same). A short or foreign packet gives
// ErrMalformed.
func Respond(cfg Config, msg1 []byte, localIndex uint32, payload2 []byte) (r *Responder, msg2 []byte, initPayload []byte, err error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, nil, err
	}
	if err := checkPayload("handshake response payload", payload2); err != nil {
		return nil, nil, nil, err
	}
	if t, ok := PacketType(msg1); !ok || t != TypeHandshakeInit || len(msg1) < initHeaderLen+noiseMsg1Min {
		return nil, nil, nil, fmt.Errorf("handshake init: not a complete type-%d packet (%d bytes): %w", TypeHandshakeInit, len(msg1), ErrMalformed)
	}
	eph, err := newEphemeral()
	if err != nil {
		return nil, nil, nil, err
	}
	return respond(cfg, msg1, localIndex, payload2, eph)
}

// respond is Respond, after the checks, with a given ephemeral private key.
func respond(cfg Config, msg1 []byte, localIndex uint32, payload2 []byte, eph [32]byte) (r *Responder, msg2 []byte, initPayload []byte, err error) {
	sender := binary.BigEndian.Uint32(msg1[4:8])
	r = &Responder{
		cfg:         cfg,
		localIndex:  localIndex,
		remoteIndex: sender,
		ephemeral:   eph,
		noiseMsg1:   bytes.Clone(msg1[initHeaderLen:]),
	}
	// Freshness first (initcache.go): a remembered ephemeral key costs nothing to refuse.
	now := cfg.now()
	e := [32]byte(r.noiseMsg1[:32])
	if cfg.InitCache != nil && cfg.InitCache.seenBefore(e, now) {
		return nil, nil, nil, fmt.Errorf("handshake init from index %d: %w", sender, ErrReplayedInit)
	}
	hs, err := newHandshakeState(&r.cfg, false, &r.ephemeral)
	if err != nil {
		return nil, nil, nil, err
	}
	p1, _, _, err := hs.ReadMessage(nil, r.noiseMsg1)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("handshake init from index %d: %w; use the same network name and secret on both nodes", sender, ErrPSKMismatch)
	}
	if len(p1) < 1+initStampLen {
		return nil, nil, nil, fmt.Errorf("handshake init from index %d: no cipher field and timestamp: %w", sender, ErrMalformed)
	}
	stamp := time.Unix(0, int64(binary.BigEndian.Uint64(p1[1:])))
	if skew := now.Sub(stamp); skew > MaxClockSkew || skew < -MaxClockSkew {
		return nil, nil, nil, fmt.Errorf("handshake init from index %d: its clock is %v off this node's (more than %v): %w",
			sender, skew.Round(time.Second), MaxClockSkew, ErrStaleInit)
	}
	if cfg.InitCache != nil {
		cfg.InitCache.add(e, stamp.Add(MaxClockSkew), now)
	}
	offered := p1[0]
	switch {
	case cfg.AESHardware && offered&CipherAES256GCM.bit() != 0:
		r.chosen = CipherAES256GCM
	case offered&CipherChaCha20Poly1305.bit() != 0:
		r.chosen = CipherChaCha20Poly1305
	default:
		return nil, nil, nil, fmt.Errorf("handshake init from index %d: no common data cipher (peer offers mask %#02x): %w", sender, offered, ErrMalformed)
	}
	r.payload2 = cfg.signer().appendBinding(append(make([]byte, 0, 1+bindingLen+len(payload2)), uint8(r.chosen)), cfg.Identity.Public)
	r.payload2 = append(r.payload2, payload2...)
	msg2 = appendHandshakeHeader(make([]byte, 0, msg2Overhead+len(payload2)), TypeHandshakeResp, localIndex, sender)
	msg2, _, _, err = hs.WriteMessage(msg2, r.payload2)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("write handshake response: %w", err)
	}
	r.hs = hs
	return r, msg2, p1[1+initStampLen:], nil
}

// rebuild recomputes the handshake state after message 2 from the stored
// message 1, ephemeral key and payload (all deterministic).
func (r *Responder) rebuild() error {
	hs, err := newHandshakeState(&r.cfg, false, &r.ephemeral)
	if err != nil {
		return err
	}
	if _, _, _, err := hs.ReadMessage(nil, r.noiseMsg1); err != nil {
		return fmt.Errorf("rebuild handshake state: %w", err)
	}
	if _, _, _, err := hs.WriteMessage(nil, r.payload2); err != nil {
		return fmt.Errorf("rebuild handshake state: %w", err)
	}
	r.hs, r.dirty = hs, false
	return nil
}

// Finish consumes the type-3 packet and returns the keypair and the
// initiator's message-3 payload. The initiator's identity is known (and
// authenticated) only now: check Keypair.PeerID before trusting the session.
//
// A failed msg3 (ErrMalformed or ErrDecrypt) leaves the Responder usable for
// the genuine one; after a successful Finish it refuses further calls.
func (r *Responder) Finish(msg3 []byte) (kp *Keypair, peerPayload []byte, err error) {
	if r.done {
		return nil, nil, errors.New("handshake final: this handshake already finished")
	}
	if t, ok := PacketType(msg3); !ok || t != TypeHandshakeFinal || len(msg3) < msg3Overhead {
		return nil, nil, fmt.Errorf("handshake final: not a complete type-%d packet (%d bytes): %w", TypeHandshakeFinal, len(msg3), ErrMalformed)
	}
	sender, receiver := binary.BigEndian.Uint32(msg3[4:8]), binary.BigEndian.Uint32(msg3[8:12])
	if sender != r.remoteIndex || receiver != r.localIndex {
		return nil, nil, fmt.Errorf("handshake final: indices %d->%d, want %d->%d: %w", sender, receiver, r.remoteIndex, r.localIndex, ErrMalformed)
	}
	if r.dirty {
		if err := r.rebuild(); err != nil {
			return nil, nil, err
		}
	}
	p3, cs1, cs2, err := r.hs.ReadMessage(nil, msg3[respHeaderLen:])
	if err != nil {
		r.dirty = true
		return nil, nil, fmt.Errorf("handshake final from index %d: %w (%v)", sender, ErrDecrypt, err)
	}
	if cs1 == nil || cs2 == nil {
		r.dirty = true
		return nil, nil, errors.New("handshake final: noise did not complete the handshake")
	}
	peerSigning, rest, err := readBinding(p3, r.hs.PeerStatic())
	if err != nil {
		r.dirty = true
		return nil, nil, fmt.Errorf("handshake final from index %d: %w", sender, err)
	}
	kp, err = newKeypair(keypairParams{
		cipher:      r.chosen,
		sendKey:     cs2.UnsafeKey(),
		recvKey:     cs1.UnsafeKey(),
		localIndex:  r.localIndex,
		remoteIndex: r.remoteIndex,
		peerStatic:  r.hs.PeerStatic(),
		peerSigning: peerSigning,
		initiator:   false,
		created:     r.cfg.now(),
	})
	if err != nil {
		r.dirty = true
		return nil, nil, fmt.Errorf("handshake final from index %d: %w", sender, err)
	}
	r.done, r.hs, r.ephemeral = true, nil, [32]byte{}
	return kp, rest, nil
}
