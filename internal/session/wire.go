package session

import "encoding/binary"

// Message types: the first byte of every underlay packet.
const (
	TypeHandshakeInit  = 1
	TypeHandshakeResp  = 2
	TypeHandshakeFinal = 3
	TypeData           = 4
	// TypeProbe is a NAT mapping probe (not a session packet): type, 3 zero bytes, an 8-byte token the
	// receiving node was given beforehand inside a session; ProbeLen bytes in all.
	TypeProbe = 6
	// ProbeLen is the length of a probe packet.
	ProbeLen = 4 + 8
)

// Header sizes. Every header is the type byte, three reserved zero bytes,
// then big-endian fields:
//
//	type 1 | 1 0 0 0 | sender u32 |                                noise msg 1
//	type 2 | 2 0 0 0 | sender u32 | receiver u32 |                 noise msg 2
//	type 3 | 3 0 0 0 | sender u32 | receiver u32 |                 noise msg 3
//	type 4 | 4 0 0 0 | receiver u32 | counter u64 |                ciphertext + 16-byte tag
//	type 5 | 5 0 0 0 | receiver u32 | cookie [16] | mac [16]        cookie reply (cookie.go)
//	type 6 | 6 0 0 0 | token [8]                                    NAT mapping probe
//
// Type-1 packets on the wire end in a 16-byte mac2 trailer (cookie.go) that NewInitiator's message
// does not have and Respond must not get: see WithMAC2 and SplitMAC2.
const (
	initHeaderLen = 8
	respHeaderLen = 12 // also type 3
	// DataHeaderLen is the length of a type-4 header: type, 3 reserved
	// bytes, receiver index, counter. It is the AEAD additional data.
	DataHeaderLen = 16
	// TagLen is the AEAD authentication tag length of both data ciphers.
	TagLen = 16
	// Overhead is how many bytes a data packet adds to its plaintext.
	Overhead = DataHeaderLen + TagLen
)

// Noise message sizes without caller payload (keys are 32 bytes, every
// encrypted field carries a 16-byte tag; messages 1 and 2 carry the
// 1-byte cipher field).
const (
	noiseMsg1Min = 32 + 16      // e, payload tag
	initStampLen = 8            // message 1's clock, unix nanos (initcache.go)
	noiseMsg2Min = 32 + 48 + 16 // e, encrypted s, payload tag
	noiseMsg3Min = 48 + 16      // encrypted s, payload tag
	msg1Overhead = initHeaderLen + noiseMsg1Min + 1 + initStampLen
	msg2Overhead = respHeaderLen + noiseMsg2Min + 1 + bindingLen // cipher, signing key binding
	msg3Overhead = respHeaderLen + noiseMsg3Min + bindingLen
)

// MaxHandshakePayload is the largest caller payload a handshake message may
// carry, so that every handshake packet fits the 2-byte TCP length prefix.
// Over UDP keep payloads well below the path MTU.
const MaxHandshakePayload = 65535 - msg2Overhead

// headerLen returns the header length of packet type t, or 0 if t is unknown.
func headerLen(t uint8) int {
	switch t {
	case TypeHandshakeInit:
		return initHeaderLen
	case TypeHandshakeResp, TypeHandshakeFinal:
		return respHeaderLen
	case TypeData:
		return DataHeaderLen
	case TypeCookieReply:
		return CookieReplyLen // fixed length: the whole packet (cookie.go)
	case TypeProbe:
		return ProbeLen
	}
	return 0
}

// PacketType returns the packet's type. ok is false, and the packet should be
// dropped, if the type is unknown, a reserved byte is not zero, or pkt is
// shorter than that type's header. It never allocates or panics.
func PacketType(pkt []byte) (t uint8, ok bool) {
	if len(pkt) < 4 || pkt[1]|pkt[2]|pkt[3] != 0 {
		return 0, false
	}
	n := headerLen(pkt[0])
	if n == 0 || len(pkt) < n {
		return 0, false
	}
	return pkt[0], true
}

// SenderIndex returns the sender index of a handshake packet (types 1, 2, 3):
// the index under which the sender wants to be addressed. ok is false for
// other or truncated packets.
func SenderIndex(pkt []byte) (uint32, bool) {
	t, ok := PacketType(pkt)
	if !ok || t == TypeData || t == TypeCookieReply {
		return 0, false
	}
	return binary.BigEndian.Uint32(pkt[4:8]), true
}

// ReceiverIndex returns the receiver index of a type 2, 3, 4 or 5 packet: the
// local index the receiving node chose, used to find the handshake or
// session the packet belongs to. ok is false for other or truncated packets.
func ReceiverIndex(pkt []byte) (uint32, bool) {
	t, ok := PacketType(pkt)
	switch {
	case !ok || t == TypeHandshakeInit:
		return 0, false
	case t == TypeData || t == TypeCookieReply:
		return binary.BigEndian.Uint32(pkt[4:8]), true
	}
	return binary.BigEndian.Uint32(pkt[8:12]), true
}

// appendHandshakeHeader appends a type-1 header (receiver ignored) or a
// type-2/3 header.
func appendHandshakeHeader(dst []byte, t uint8, sender, receiver uint32) []byte {
	dst = append(dst, t, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, sender)
	if t != TypeHandshakeInit {
		dst = binary.BigEndian.AppendUint32(dst, receiver)
	}
	return dst
}
