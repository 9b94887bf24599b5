package session

// The node's signing identity. Each node has an Ed25519 key next to its Noise (X25519) key. It is
// derived from the same 32-byte secret in node.key (a keyed BLAKE2s of it), so one file backs both and
// existing state directories keep working. The node ID is a hash of the signing public key, and every
// handshake binds the two keys: each side sends its signing public key and a signature over its Noise
// static key, inside the authenticated Noise payload. Anything the node signs (its announcements) can
// therefore be checked by any node against the node ID alone, and no member can speak for another node
// ID without that node's secret.

import (
	"crypto/ed25519"
	"fmt"

	"golang.org/x/crypto/blake2s"
)

const (
	// SigningKeyLen is the length of an Ed25519 public key.
	SigningKeyLen = ed25519.PublicKeySize
	// SignatureLen is the length of an Ed25519 signature.
	SignatureLen = ed25519.SignatureSize
	// bindingLen is what a handshake payload starts with: signing key and binding signature.
	bindingLen = SigningKeyLen + SignatureLen

	signingLabel = "weft signing key v1"
	bindingLabel = "weft key binding v1\x00"
)

// signingKey derives the node's Ed25519 private key from its Noise private key.
func (id Identity) signingKey() ed25519.PrivateKey {
	h, _ := blake2s.New256(id.Private[:]) // a 32-byte key is always accepted
	h.Write([]byte(signingLabel))
	return ed25519.NewKeyFromSeed(h.Sum(nil))
}

// SigningPublic returns the node's Ed25519 public key.
func (id Identity) SigningPublic() [SigningKeyLen]byte {
	return [SigningKeyLen]byte(id.signingKey().Public().(ed25519.PublicKey))
}

// Signer signs with the node's signing key; it holds the derived private key, so derive it once.
type Signer struct {
	key ed25519.PrivateKey
	pub [SigningKeyLen]byte
}

// Signer returns a Signer for the node's signing key.
func (id Identity) Signer() *Signer {
	k := id.signingKey()
	return &Signer{key: k, pub: [SigningKeyLen]byte(k.Public().(ed25519.PublicKey))}
}

// Public is the signing public key.
func (s *Signer) Public() [SigningKeyLen]byte { return s.pub }

// NodeID is the ID of the node this key signs for.
func (s *Signer) NodeID() NodeID { return NodeIDOf(s.pub) }

// Sign returns the signature of msg.
func (s *Signer) Sign(msg []byte) [SignatureLen]byte {
	return [SignatureLen]byte(ed25519.Sign(s.key, msg))
}

// Verify reports whether sig is pub's signature of msg.
func Verify(pub [SigningKeyLen]byte, msg []byte, sig [SignatureLen]byte) bool {
	return ed25519.Verify(pub[:], msg, sig[:])
}

// appendBinding appends the signing key and its signature over the Noise static key noisePub.
func (s *Signer) appendBinding(b []byte, noisePub [32]byte) []byte {
	sig := s.Sign(append([]byte(bindingLabel), noisePub[:]...))
	b = append(b, s.pub[:]...)
	return append(b, sig[:]...)
}

// readBinding checks the binding at the start of a peer's handshake payload against the peer's Noise
// static key and returns the peer's signing key and the rest of the payload.
func readBinding(p []byte, noisePub []byte) (pub [SigningKeyLen]byte, rest []byte, err error) {
	if len(p) < bindingLen || len(noisePub) != 32 {
		return pub, nil, fmt.Errorf("no signing key in the handshake payload (%d bytes): %w", len(p), ErrMalformed)
	}
	pub = [SigningKeyLen]byte(p[:SigningKeyLen])
	sig := [SignatureLen]byte(p[SigningKeyLen:bindingLen])
	if !Verify(pub, append([]byte(bindingLabel), noisePub...), sig) {
		return pub, nil, fmt.Errorf("the peer's signing key does not sign its Noise key: %w", ErrDecrypt)
	}
	return pub, p[bindingLen:], nil
}
