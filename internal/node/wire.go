package node

// Inner messages: what a decrypted data packet carries. The first byte is the message type.
//
//	msgIP        | 1 | ttl u8 | IPv4 packet                 an IP packet on its way to the node owning its destination
//	msgPing      | 2 | seq u32 | sent unix nanos u64        keepalive and latency probe, answered by msgPong
//	msgPong      | 3 | seq u32 | sent unix nanos u64        the ping's payload echoed back
//	msgAnnounce  | 4 | mesh.Announce wire encoding          link-state flooding
//	msgKCP       | 5 | ttl u8 | dst node u64 | src node u64 | KCP segment   the proxy's transport, end to end
//
// The handshake payload (hello) travels inside the Noise messages 2 and 3:
//
//	version u8 | ipv4 [4] | prefix len u8 | hostname len u8 | hostname

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

const (
	msgIP       = 1
	msgPing     = 2
	msgPong     = 3
	msgAnnounce = 4
	msgKCP      = 5
)

// ipHeaderLen is the inner header in front of a relayed IP packet: type and TTL.
const ipHeaderLen = 2

// defaultTTL bounds how many sessions an IP packet may cross; it only matters while routes converge.
const defaultTTL = 16

const pingLen = 1 + 4 + 8

// hello is what a node tells a peer about itself during the handshake.
type hello struct {
	IPv4     netip.Prefix
	Hostname string
}

const helloVersion = 1

func (h hello) marshal() []byte {
	b := make([]byte, 0, 8+len(h.Hostname))
	b = append(b, helloVersion)
	a := h.IPv4.Addr().As4()
	b = append(b, a[:]...)
	b = append(b, byte(h.IPv4.Bits()))
	name := h.Hostname
	if len(name) > 255 {
		name = name[:255]
	}
	b = append(b, byte(len(name)))
	return append(b, name...)
}

var errBadHello = errors.New("malformed hello")

func parseHello(b []byte) (hello, error) {
	if len(b) < 7 || b[0] != helloVersion {
		return hello{}, errBadHello
	}
	bits := int(b[5])
	n := int(b[6])
	if bits > 32 || len(b) != 7+n {
		return hello{}, errBadHello
	}
	return hello{
		IPv4:     netip.PrefixFrom(netip.AddrFrom4([4]byte(b[1:5])), bits),
		Hostname: string(b[7:]),
	}, nil
}

func appendPing(b []byte, typ byte, seq uint32, nanos int64) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint32(b, seq)
	return binary.BigEndian.AppendUint64(b, uint64(nanos))
}
