package session

import "golang.org/x/crypto/argon2"

// Argon2id parameters of DerivePSK. Every node of a network must use the same
// values, so they are part of the protocol ("weft/v1").
const (
	pskSaltPrefix = "weft/v1/"
	pskTime       = 2
	pskMemoryKiB  = 64 * 1024
	pskThreads    = 2
	pskLen        = 32
)

// DerivePSK derives the network's Noise pre-shared key:
// Argon2id(secret, salt = "weft/v1/" + networkName, time=2, memory=64 MiB,
// threads=2, 32 bytes). It is deliberately slow (about 0.1-0.3 s and 64 MiB):
// call it once at start, not per handshake.
func DerivePSK(networkName, secret string) [32]byte {
	var psk [32]byte
	copy(psk[:], argon2.IDKey([]byte(secret), []byte(pskSaltPrefix+networkName), pskTime, pskMemoryKiB, pskThreads, pskLen))
	return psk
}
