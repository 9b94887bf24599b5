package proxy

// Segments: what the transport hands the node to carry to another node, inside the encrypted, routed
// msgKCP message. Every proxied flow is its own KCP conversation; a conversation is named by the node
// that opened it and its 32-bit id, so the receiver demultiplexes on (sending node, direction, conv).
//
//	segment = kind u8 | body
//	kind segToAcceptor  body = KCP packet of a conversation the sender opened
//	kind segToOpener    body = KCP packet of a conversation the receiver opened
//	kind segReset       body = yours u8 (1: a conversation the receiver opened, 0: one the sender
//	                    opened) | conv u32 (big-endian): "drop this conversation and reset its flow"
//
// A KCP packet is one or more KCP segments in KCP's own wire format (internal/arq), whose first four
// bytes are the conversation id (little-endian).

import (
	"encoding/binary"
	"fmt"

	"github.com/weft-vpn/weft/internal/session"
)

const (
	segToAcceptor byte = 1
	segToOpener   byte = 2
	segReset      byte = 3

	segKindLen  = 1
	resetBody   = 5
	kcpConvLen  = 4
	minKCPBytes = 24 // one KCP header
	// kcpMaxPacket caps the KCP packets of a conversation (its MTU) whatever MaxSegment is.
	kcpMaxPacket = 1472
	// minSegment is the smallest MaxSegment accepted: a KCP header needs room for payload.
	minSegment = 256
)

// convKey names a conversation from this node's side.
type convKey struct {
	peer session.NodeID
	id   uint32
	mine bool // this node opened it
}

// segment is one parsed segment.
type segment struct {
	kind byte
	conv uint32
	mine bool   // for data: the conversation is one this node opened; for a reset: likewise
	body []byte // the KCP packet (data kinds)
}

// parseSegment checks a segment's framing (not the KCP packet inside, which the conversation checks).
func parseSegment(seg []byte) (segment, error) {
	if len(seg) < segKindLen {
		return segment{}, fmt.Errorf("%w: empty segment", ErrMalformed)
	}
	body := seg[segKindLen:]
	switch k := seg[0]; k {
	case segToAcceptor, segToOpener:
		if len(body) < minKCPBytes {
			return segment{}, fmt.Errorf("%w: KCP packet of %d bytes", ErrMalformed, len(body))
		}
		return segment{kind: k, conv: binary.LittleEndian.Uint32(body), mine: k == segToOpener, body: body}, nil
	case segReset:
		if len(body) != resetBody || body[0] > 1 {
			return segment{}, fmt.Errorf("%w: reset segment of %d bytes", ErrMalformed, len(body))
		}
		return segment{kind: k, conv: binary.BigEndian.Uint32(body[1:]), mine: body[0] == 1}, nil
	default:
		return segment{}, fmt.Errorf("%w: segment kind %d", ErrMalformed, k)
	}
}

// appendReset appends a reset segment for the receiver's view of conversation key (our key).
func appendReset(dst []byte, k convKey) []byte {
	yours := byte(0)
	if !k.mine { // the receiver opened it
		yours = 1
	}
	dst = append(dst, segReset, yours, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], k.id)
	return dst
}
