package proxy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// FlowID is a TCP 4-tuple as the client sees it: Src is the client, Dst the
// server. Both are IPv4 (weft's virtual network is IPv4).
type FlowID struct {
	Src, Dst netip.AddrPort
}

// String formats the flow as "10.144.144.2:41822 -> 10.144.144.1:6379".
func (f FlowID) String() string {
	return f.Src.String() + " -> " + f.Dst.String()
}

// validate reports why f cannot name a proxied flow, or nil.
func (f FlowID) validate() error {
	for _, ap := range []netip.AddrPort{f.Src, f.Dst} {
		if !ap.Addr().Is4() {
			return fmt.Errorf("flow %s: %s is not an IPv4 address", f, ap.Addr())
		}
		if ap.Port() == 0 {
			return fmt.Errorf("flow %s: port 0 is not a TCP port a connection can use", f)
		}
	}
	return nil
}

// flowKey is the allocation-free map key of a flow: client address and
// port, then server address and port, as on the wire (big-endian).
type flowKey [12]byte

// keyOf returns the key of f; f must be IPv4.
func keyOf(f FlowID) flowKey {
	var k flowKey
	src, dst := f.Src.Addr().As4(), f.Dst.Addr().As4()
	copy(k[0:4], src[:])
	binary.BigEndian.PutUint16(k[4:6], f.Src.Port())
	copy(k[6:10], dst[:])
	binary.BigEndian.PutUint16(k[10:12], f.Dst.Port())
	return k
}

// reversed returns the key of the same flow seen from the other end.
func (k flowKey) reversed() flowKey {
	var r flowKey
	copy(r[0:6], k[6:12])
	copy(r[6:12], k[0:6])
	return r
}

// id converts the key back to a FlowID.
func (k flowKey) id() FlowID {
	return FlowID{
		Src: netip.AddrPortFrom(netip.AddrFrom4([4]byte(k[0:4])), binary.BigEndian.Uint16(k[4:6])),
		Dst: netip.AddrPortFrom(netip.AddrFrom4([4]byte(k[6:10])), binary.BigEndian.Uint16(k[10:12])),
	}
}

// IPv4/TCP header facts used by parseTCP4.
const (
	ipv4MinHeader = 20
	protoTCP      = 6
	tcpFlagSYN    = 0x02
	tcpFlagACK    = 0x10
)

// parseTCP4 reads the 4-tuple (as the packet travels: source first) and the
// TCP flags of an IPv4 TCP packet. ok is false for anything else: another
// version or protocol, a truncated header, or a fragment other than the first
// (it carries no TCP header; TCP sets DF, so netstack flows do not fragment).
// It reads only the headers and does not allocate.
func parseTCP4(pkt []byte) (k flowKey, flags byte, ok bool) {
	if len(pkt) < ipv4MinHeader || pkt[0]>>4 != 4 || pkt[9] != protoTCP {
		return k, 0, false
	}
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < ipv4MinHeader || binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
		return k, 0, false
	}
	if len(pkt) < ihl+14 { // ports, seq, ack, data offset, flags
		return k, 0, false
	}
	copy(k[0:4], pkt[12:16])
	copy(k[4:6], pkt[ihl:ihl+2])
	copy(k[6:10], pkt[16:20])
	copy(k[10:12], pkt[ihl+2:ihl+4])
	return k, pkt[ihl+13], true
}
