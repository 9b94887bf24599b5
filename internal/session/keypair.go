package session

// Data path. Sending: the node reads a plaintext (an inner message), calls
// Seal or SealInPlace, which takes the next counter atomically, writes the
// 16-byte header and encrypts with the header as additional data; the node
// sends the result. Receiving: the node finds the Keypair by ReceiverIndex
// and calls Open, which checks the header, authenticates and decrypts, and
// only then checks and marks the counter in the replay window.

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// RejectAfterMessages is how many counters one keypair may use; Seal fails
// with ErrKeyExhausted after that and Open rejects larger counters. The node
// should rekey long before.
const RejectAfterMessages = 1 << 60

// errOverlap reports buffers that overlap in a way the AEAD cannot handle.
var errOverlap = errors.New("session: output buffer overlaps input other than exactly in place")

// Keypair is one established session's keys and counters. Seal may be called
// from many goroutines at once, and so may Open.
type Keypair struct {
	sendCounter atomic.Uint64 // next counter to use
	_           cpu.CacheLinePad
	replay      replayWindow
	send, recv  cipher.AEAD
	// nonces recycles *[12]byte nonce buffers: a nonce on the stack would
	// escape through the cipher.AEAD interface and cost an allocation per
	// packet.
	nonces sync.Pool

	localIndex, remoteIndex uint32
	peerStatic              [32]byte
	peerSigning             [SigningKeyLen]byte
	peerID                  NodeID
	cipher                  CipherID
	initiator               bool
	created                 time.Time
}

// keypairParams are the results of a handshake.
type keypairParams struct {
	cipher                  CipherID
	sendKey, recvKey        [32]byte
	localIndex, remoteIndex uint32
	peerStatic              []byte
	peerSigning             [SigningKeyLen]byte
	initiator               bool
	created                 time.Time
}

func newKeypair(p keypairParams) (*Keypair, error) {
	if len(p.peerStatic) != 32 {
		return nil, errors.New("handshake finished without the peer's static key")
	}
	send, err := newAEAD(p.cipher, p.sendKey)
	if err != nil {
		return nil, err
	}
	recv, err := newAEAD(p.cipher, p.recvKey)
	if err != nil {
		return nil, err
	}
	k := &Keypair{
		send:        send,
		recv:        recv,
		localIndex:  p.localIndex,
		remoteIndex: p.remoteIndex,
		cipher:      p.cipher,
		initiator:   p.initiator,
		created:     p.created,
	}
	k.nonces.New = func() any { return new([12]byte) }
	copy(k.peerStatic[:], p.peerStatic)
	k.peerSigning = p.peerSigning
	k.peerID = NodeIDOf(p.peerSigning)
	return k, nil
}

// LocalIndex is the index the peer puts in packets it sends to us.
func (k *Keypair) LocalIndex() uint32 { return k.localIndex }

// RemoteIndex is the index we put in packets we send to the peer.
func (k *Keypair) RemoteIndex() uint32 { return k.remoteIndex }

// PeerStatic is the peer's static public key, authenticated by the handshake.
func (k *Keypair) PeerStatic() [32]byte { return k.peerStatic }

// PeerSigning is the peer's signing public key, bound to PeerStatic in the handshake.
func (k *Keypair) PeerSigning() [SigningKeyLen]byte { return k.peerSigning }

// PeerID is the peer's NodeID, derived from PeerSigning.
func (k *Keypair) PeerID() NodeID { return k.peerID }

// Cipher is the data cipher agreed in the handshake.
func (k *Keypair) Cipher() CipherID { return k.cipher }

// Initiator reports whether this node initiated the handshake.
func (k *Keypair) Initiator() bool { return k.initiator }

// Created is when the handshake completed (Config.Now).
func (k *Keypair) Created() time.Time { return k.created }

// SendCount is how many counters Seal has used so far (at most
// RejectAfterMessages).
func (k *Keypair) SendCount() uint64 {
	return min(k.sendCounter.Load(), RejectAfterMessages)
}

// Seal appends a complete type-4 packet (header, then plaintext encrypted and
// authenticated together with the header) to dst and returns the extended
// slice. It takes the next counter atomically and does not allocate when dst
// has room for len(plaintext)+Overhead more bytes.
//
// plaintext may sit exactly where its ciphertext goes (that is, start at
// dst[len(dst)+DataHeaderLen]); any other overlap between plaintext and the
// room after len(dst) is an error. After RejectAfterMessages packets it
// returns ErrKeyExhausted and dst unchanged.
func (k *Keypair) Seal(dst, plaintext []byte) ([]byte, error) {
	counter := k.sendCounter.Add(1) - 1
	if counter >= RejectAfterMessages {
		k.sendCounter.Store(RejectAfterMessages) // no wrap, however often it is called
		return dst, ErrKeyExhausted
	}
	ret := slices.Grow(dst, len(plaintext)+Overhead)[:len(dst)+len(plaintext)+Overhead]
	out := ret[len(dst):]
	if anyOverlap(out[:DataHeaderLen], plaintext) || inexactOverlap(out[DataHeaderLen:], plaintext) {
		return dst, errOverlap
	}
	out[0], out[1], out[2], out[3] = TypeData, 0, 0, 0
	binary.BigEndian.PutUint32(out[4:8], k.remoteIndex)
	binary.BigEndian.PutUint64(out[8:16], counter)
	nonce := k.nonce(counter)
	k.send.Seal(out[DataHeaderLen:DataHeaderLen], nonce[:], plaintext, out[:DataHeaderLen])
	k.nonces.Put(nonce)
	return ret, nil
}

// SealInPlace encrypts a plaintext that the caller placed at
// buf[DataHeaderLen:DataHeaderLen+plaintextLen], writing the header into
// buf[:DataHeaderLen] and the 16-byte tag right after the plaintext, so
// cap(buf) must be at least plaintextLen+Overhead. It returns
// buf[:plaintextLen+Overhead], the packet to send, and never allocates.
func (k *Keypair) SealInPlace(buf []byte, plaintextLen int) ([]byte, error) {
	if plaintextLen < 0 || cap(buf)-Overhead < plaintextLen {
		return nil, errors.New("session: SealInPlace needs cap(buf) >= DataHeaderLen + plaintext length + TagLen")
	}
	return k.Seal(buf[:0], buf[DataHeaderLen:DataHeaderLen+plaintextLen])
}

// Open authenticates and decrypts the type-4 packet pkt and appends the
// plaintext to dst. The counter is checked against and recorded in the
// replay window only after the packet authenticated, so forged packets
// cannot move the window. It does not allocate when dst has room for
// len(pkt)-Overhead more bytes.
//
// For zero-copy decryption pass dst = pkt[DataHeaderLen:DataHeaderLen]: the
// plaintext then replaces the ciphertext in pkt (on failure those bytes may
// be clobbered). Any other overlap between dst's room and pkt is an error.
//
// Errors are the unwrapped sentinels ErrMalformed (short packet, wrong type
// or receiver index), ErrDecrypt and ErrReplay; on error dst is returned
// unchanged.
func (k *Keypair) Open(dst, pkt []byte) ([]byte, error) {
	if len(pkt) < Overhead || pkt[0] != TypeData || pkt[1]|pkt[2]|pkt[3] != 0 ||
		binary.BigEndian.Uint32(pkt[4:8]) != k.localIndex {
		return dst, ErrMalformed
	}
	counter := binary.BigEndian.Uint64(pkt[8:16])
	if counter >= RejectAfterMessages {
		return dst, ErrMalformed
	}
	if n := len(pkt) - Overhead; cap(dst)-len(dst) >= n {
		room := dst[len(dst) : len(dst)+n]
		if anyOverlap(room, pkt[:DataHeaderLen]) || inexactOverlap(room, pkt[DataHeaderLen:]) {
			return dst, errOverlap
		}
	}
	nonce := k.nonce(counter)
	ret, err := k.recv.Open(dst, nonce[:], pkt[DataHeaderLen:], pkt[:DataHeaderLen])
	k.nonces.Put(nonce)
	if err != nil {
		return dst, ErrDecrypt
	}
	if !k.replay.accept(counter) {
		return dst, ErrReplay
	}
	return ret, nil
}

// nonce returns a pooled nonce buffer holding 4 zero bytes and the
// big-endian counter. Return it to k.nonces after use.
func (k *Keypair) nonce(counter uint64) *[12]byte {
	n := k.nonces.Get().(*[12]byte)
	binary.BigEndian.PutUint32(n[:4], 0)
	binary.BigEndian.PutUint64(n[4:], counter)
	return n
}

// anyOverlap reports whether x and y share any byte of memory.
func anyOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	xStart, xEnd := uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&x[len(x)-1]))
	yStart, yEnd := uintptr(unsafe.Pointer(&y[0])), uintptr(unsafe.Pointer(&y[len(y)-1]))
	return xStart <= yEnd && yStart <= xEnd
}

// inexactOverlap reports whether x and y share memory without starting at the
// same address (the one overlap an AEAD accepts).
func inexactOverlap(x, y []byte) bool {
	return len(x) > 0 && len(y) > 0 && &x[0] != &y[0] && anyOverlap(x, y)
}
