package node

// Inner messages: what a decrypted data packet carries. The first byte is the message type.
//
//	msgIP        | 1 | ttl u8 | IPv4 packet                 an IP packet on its way to the node owning its destination
//	msgPing      | 2 | seq u32 | sent unix nanos u64        keepalive and latency probe, answered by msgPong
//	msgPong      | 3 | seq u32 | sent unix nanos u64        the ping's payload echoed back; the RTT is
//	                                                         timed by seq on the pinging node's clock (the
//	                                                         echoed time is not trusted)
//	msgAnnounce  | 4 | mesh.Announce wire encoding          link-state flooding
//	msgKCP       | 5 | ttl u8 | dst node u64 | src node u64 | KCP segment   the proxy's transport
//	msgSealed    | 7 | ttl u8 | dst node u64 | e2e data packet    a message in the end-to-end session of two
//	                                                               nodes that are not direct peers (e2e.go)
//	msgRoutedHandshake | 8 | ttl u8 | dst node u64 | src node u64 | handshake packet   that session's handshake
//	msgObserved  | 9 | ipv4 [4] | port u16               the address the sender sees the receiver at (nat.go)
//	msgProbeReq  | 10 | token [8]                        watch for a mapping probe with this token (nat.go)
//	msgProbed    | 11 | token [8] | ipv4 [4] | port u16   where that probe came from
//
// Over a direct session a node sends only what it originates for that peer: msgIP and msgKCP are never
// relayed; a relay forwards msgSealed and msgRoutedHandshake by destination node.
//
// The handshake payload (hello) travels inside the Noise messages 2 and 3:
//
//	version u8 | ipv4 [4] | prefix len u8 | hostname len u8 | hostname [| cert len u16 | certificate]
//
//	msgRefused   | 6 | reason (text)                     the peer refused this session (certificate mode)

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/weft-vpn/weft/internal/dataplane"
)

const (
	msgIP       = dataplane.MsgIP
	msgPing     = 2
	msgPong     = 3
	msgAnnounce = 4
	msgKCP      = 5
	msgRefused  = 6
	// msgSealed and msgRoutedHandshake carry end-to-end sessions through relays (e2e.go).
	msgSealed          = 7
	msgRoutedHandshake = 8
)

// ipHeaderLen is the inner header in front of an IP packet: type and TTL.
const ipHeaderLen = dataplane.InnerHeaderLen

// defaultTTL bounds how many sessions an inner message may cross; it only matters while routes converge.
const defaultTTL = dataplane.DefaultTTL

const pingLen = 1 + 4 + 8

// hello is what a node tells a peer about itself during the handshake.
type hello struct {
	IPv4     netip.Prefix
	Hostname string
	Cert     []byte // certificate mode: the node's certificate; empty otherwise
}

const helloVersion = 1

func (h hello) marshal() []byte {
	b := make([]byte, 0, 10+len(h.Hostname)+len(h.Cert))
	b = append(b, helloVersion)
	a := h.IPv4.Addr().As4()
	b = append(b, a[:]...)
	b = append(b, byte(h.IPv4.Bits()))
	name := h.Hostname
	if len(name) > 255 {
		name = name[:255]
	}
	b = append(b, byte(len(name)))
	b = append(b, name...)
	if len(h.Cert) > 0 {
		b = binary.BigEndian.AppendUint16(b, uint16(len(h.Cert)))
		b = append(b, h.Cert...)
	}
	return b
}

var errBadHello = errors.New("malformed hello")

func parseHello(b []byte) (hello, error) {
	if len(b) < 7 || b[0] != helloVersion {
		return hello{}, errBadHello
	}
	bits := int(b[5])
	n := int(b[6])
	if bits > 32 || len(b) < 7+n {
		return hello{}, errBadHello
	}
	h := hello{
		IPv4:     netip.PrefixFrom(netip.AddrFrom4([4]byte(b[1:5])), bits),
		Hostname: string(b[7 : 7+n]),
	}
	rest := b[7+n:]
	switch {
	case len(rest) == 0:
	case len(rest) >= 2 && len(rest) == 2+int(binary.BigEndian.Uint16(rest)) && len(rest) > 2:
		h.Cert = bytes.Clone(rest[2:])
	default:
		return hello{}, errBadHello
	}
	return h, nil
}

func appendPing(b []byte, typ byte, seq uint32, nanos int64) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint32(b, seq)
	return binary.BigEndian.AppendUint64(b, uint64(nanos))
}
