// Package session is weft's cryptographic core: the node identity (a static
// Curve25519 key pair and the NodeID derived from it), the network pre-shared
// key, the three Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s handshake messages and
// the data keypairs that seal and open type-4 packets.
//
// The package is pure: it opens no sockets, starts no goroutines and keeps no
// timers. The node package owns the handshake retries, rekeying and the
// index -> session table; it drives this package with whole underlay packets
// (see docs/ARCHITECTURE.md "Wire format"):
//
//	initiator                                   responder
//	NewInitiator  -- type 1 (e, PSK-encrypted ciphers+payload) -->  Respond
//	Finish        <-- type 2 (e, ee, s, es, chosen cipher+payload) --
//	              -- type 3 (s, se, payload) ----------------------->  Finish
//	Keypair.Seal  -- type 4 data ----------------------------------->  Keypair.Open
//
// A wrong network secret or name is detected by the responder at message 1
// (ErrPSKMismatch). Data packets carry an explicit 64-bit counter used as the
// AEAD nonce and are checked against a sliding anti-replay window.
package session
