// Package dataplane is a weft node's packet path: IP packets read from the TUN become sealed datagrams
// on the underlay, and opened IP packets go back into the TUN, under the address rules a firewall on
// either end relies on (a node sends only from addresses it owns, and accepts a packet only when its
// source belongs to the node that authenticated it).
//
// The package knows nothing of handshakes, announcements or the proxy: the node gives it the routing
// table, a Sealer (which session a message to a node goes in), the proxy's outbound hook and a Demux
// for every datagram it reads (plane.go).
package dataplane

import "github.com/weft-vpn/weft/internal/session"

// Buffer layout of an outbound message (offsets from the start of its buffer):
//
//	| hop session header | envelope (msgSealed: type, TTL, node) | e2e session header | inner message | tags |
//	0                    DataHeaderLen                           E2EExtra             MsgOffset
//
// A message for a direct peer is sealed from E2EExtra (its session header just in front of the inner
// message); one for a node behind relays uses the whole headroom. An IP packet read from the TUN starts
// at TUNReadOffset, behind the inner header (type, TTL) at MsgOffset, with room for two tags behind it.
// An IP packet opened from a direct peer's datagram sits at TUNWriteOffset of that datagram, where it is
// written to the TUN from.
const (
	// InnerHeaderLen is the inner header in front of an IP packet: message type and TTL.
	InnerHeaderLen = 2
	// EnvelopeLen is the msgSealed envelope a relay reads: type, TTL, destination node.
	EnvelopeLen = 2 + 8
	// E2EExtra is the headroom an e2e-sealed message needs besides one session header.
	E2EExtra = EnvelopeLen + session.DataHeaderLen
	// MsgOffset is where an inner message starts in an outbound buffer.
	MsgOffset = E2EExtra + session.DataHeaderLen
	// TUNReadOffset is where a packet read from the TUN starts in its buffer.
	TUNReadOffset = MsgOffset + InnerHeaderLen
	// TUNWriteOffset is where an opened IP packet starts in a direct peer's datagram.
	TUNWriteOffset = session.DataHeaderLen + InnerHeaderLen
	// Tailroom is the room behind a message for the tags of both sessions.
	Tailroom = 2 * session.TagLen
)

// MsgIP is the inner message type of an IP packet; DefaultTTL bounds how many sessions it may cross
// (it only matters while routes converge).
const (
	MsgIP      = 1
	DefaultTTL = 16
)
