// Package mesh keeps weft's picture of the network: what every node announces (its virtual IP, the LANs it
// exposes, its direct neighbours and their measured cost) and the routes that follow from it.
//
// The protocol is link-state. Each node floods an Announce through the sessions it has; every node keeps
// the newest Announce of every origin (by sequence number, which starts at the origin's boot time in
// nanoseconds so a restarted node supersedes its old self), and computes shortest paths over the graph of
// links that both ends announce (two-way check). Link state rather than path vector because every node sees
// the whole graph: there is no count-to-infinity, a dead link disappears from every path as soon as one of
// its ends says so, and `weft peers` can list every node with its hop count. Loops are impossible while
// the databases agree; while they converge, the data plane's TTL drops any packet that circles.
// Hysteresis lives in the announced costs: a node re-announces a neighbour's cost only when it moved by
// more than a fifth (and at least a millisecond), so routes do not flap on latency jitter.
package mesh

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/weft-vpn/weft/internal/session"
)

// Subnet is a LAN prefix a node exposes.
type Subnet struct {
	Prefix netip.Prefix
	// Proxy is true when senders may carry TCP flows to this prefix over the KCP proxy
	// (false: "proxy: deny", the kernel alone forwards them).
	Proxy bool
}

// Neighbor is a node with which the origin has a live direct session.
type Neighbor struct {
	ID session.NodeID
	// CostUS is the origin's smoothed round-trip time to the neighbour in microseconds, plus a per-hop
	// penalty (HopPenaltyUS) so that fewer hops win among near-equal paths.
	CostUS uint32
}

// HopPenaltyUS is added to every measured link cost.
const HopPenaltyUS = 1000

// Announce is one node's link-state advertisement, signed by its origin: SigningKey hashes to Origin
// (session.NodeIDOf) and signs the rest, so no other node can make or alter an Announce for Origin.
type Announce struct {
	Origin session.NodeID
	// Seq orders announcements of one origin: a higher Seq replaces a lower one.
	Seq      uint64
	Hostname string
	// IPv4 is the node's virtual address with the prefix length of its virtual network.
	IPv4 netip.Prefix
	// ProxyIn is true when the node accepts KCP-proxied flows to its own virtual IP.
	ProxyIn   bool
	Subnets   []Subnet
	Neighbors []Neighbor
	// Cert is the origin's certificate in certificate mode (cert package encoding), empty otherwise.
	// DecodeAnnounce checks only its size; a node in certificate mode verifies it (cert.Checker).
	Cert []byte
	// Endpoints are the UDP addresses the origin may be reached at directly, for NAT traversal: its
	// listeners' local addresses and the public mappings its peers observed (at most MaxEndpoints).
	Endpoints []netip.AddrPort
	// SigningKey is the origin's signing public key (set by Sign, checked by DecodeAnnounce).
	SigningKey [session.SigningKeyLen]byte

	wire []byte // the signed encoding, as made by Sign or received
}

const (
	announceVersion = 4 // 2: signed; 3: with the origin's certificate; 4: with its endpoints
	maxCert         = 4096
	maxHostname     = 255
	maxSubnets      = 255
	maxNeighbors    = 4096
	// MaxEndpoints bounds the endpoints of one Announce.
	MaxEndpoints    = 16
	flagProxyIn     = 1
	flagSubnetProxy = 1
)

// Errors of DecodeAnnounce (test with errors.Is).
var (
	// ErrMalformedAnnounce: the bytes are not an Announce.
	ErrMalformedAnnounce = errors.New("malformed announce")
	// ErrForgedAnnounce: a well-formed Announce whose signing key is not its origin's, or whose
	// signature does not verify (made or altered by another node).
	ErrForgedAnnounce = errors.New("forged announce")
)

// Sign encodes a and signs it with s, the origin's key (its node ID must be a.Origin); Wire then
// returns the signed encoding:
//
//	version u8 | origin u64 | seq u64 | flags u8 | ipv4 [4] | prefix len u8 | hostname len u8 | hostname |
//	subnet count u8 | { addr [4] | len u8 | flags u8 } ... | neighbour count u16 | { id u64 | cost u32 } ... |
//	certificate len u16 | certificate | endpoint count u8 | { addr [4] | port u16 } ... |
//	signing key [32] | Ed25519 signature [64] of everything before it
func (a *Announce) Sign(s *session.Signer) error {
	if s.NodeID() != a.Origin {
		return fmt.Errorf("sign announce of node %v with the key of node %v", a.Origin, s.NodeID())
	}
	a.SigningKey = s.Public()
	b, err := a.appendBody(nil)
	if err != nil {
		return err
	}
	b = append(b, a.SigningKey[:]...)
	sig := s.Sign(b)
	a.wire = append(b, sig[:]...)
	return nil
}

// Wire returns the signed encoding (nil before Sign for an Announce not decoded from the wire). The
// bytes are shared: do not modify them.
func (a *Announce) Wire() []byte { return a.wire }

// appendBody appends the encoding of a up to (not including) its signing key.
func (a *Announce) appendBody(b []byte) ([]byte, error) {
	if len(a.Hostname) > maxHostname || len(a.Subnets) > maxSubnets || len(a.Neighbors) > maxNeighbors || len(a.Cert) > maxCert ||
		len(a.Endpoints) > MaxEndpoints {
		return b, fmt.Errorf("announce too large: hostname %d bytes, %d subnets, %d neighbours, certificate %d bytes, %d endpoints",
			len(a.Hostname), len(a.Subnets), len(a.Neighbors), len(a.Cert), len(a.Endpoints))
	}
	if !a.IPv4.Addr().Is4() {
		return b, fmt.Errorf("announce: virtual address %v is not IPv4", a.IPv4)
	}
	b = append(b, announceVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(a.Origin))
	b = binary.BigEndian.AppendUint64(b, a.Seq)
	var flags byte
	if a.ProxyIn {
		flags |= flagProxyIn
	}
	b = append(b, flags)
	ip := a.IPv4.Addr().As4()
	b = append(b, ip[:]...)
	b = append(b, byte(a.IPv4.Bits()))
	b = append(b, byte(len(a.Hostname)))
	b = append(b, a.Hostname...)
	b = append(b, byte(len(a.Subnets)))
	for _, s := range a.Subnets {
		if !s.Prefix.Addr().Is4() {
			return b, fmt.Errorf("announce: subnet %v is not IPv4", s.Prefix)
		}
		sa := s.Prefix.Addr().As4()
		b = append(b, sa[:]...)
		b = append(b, byte(s.Prefix.Bits()))
		var f byte
		if s.Proxy {
			f |= flagSubnetProxy
		}
		b = append(b, f)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Neighbors)))
	for _, n := range a.Neighbors {
		b = binary.BigEndian.AppendUint64(b, uint64(n.ID))
		b = binary.BigEndian.AppendUint32(b, n.CostUS)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Cert)))
	b = append(b, a.Cert...)
	b = append(b, byte(len(a.Endpoints)))
	for _, e := range a.Endpoints {
		if !e.Addr().Is4() {
			return b, fmt.Errorf("announce: endpoint %v is not IPv4", e)
		}
		ea := e.Addr().As4()
		b = append(b, ea[:]...)
		b = binary.BigEndian.AppendUint16(b, e.Port())
	}
	return b, nil
}

// reader is a bounds-checked cursor over a byte slice; after the first short read every read returns
// zero and ok() is false.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}
func (r *reader) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}
func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}
func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}
func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}
func (r *reader) addr4() netip.Addr {
	if v := r.take(4); v != nil {
		return netip.AddrFrom4([4]byte(v))
	}
	return netip.Addr{}
}

// DecodeAnnounce parses and verifies the signed encoding made by Sign. It never panics; anything
// malformed (short, trailing bytes, bad prefix lengths) gives ErrMalformedAnnounce, a signing key that is
// not the origin's or a signature that does not verify gives ErrForgedAnnounce.
func DecodeAnnounce(b []byte) (Announce, error) {
	r := reader{b: b}
	var a Announce
	if v := r.u8(); v != announceVersion {
		return a, fmt.Errorf("%w: version %d", ErrMalformedAnnounce, v)
	}
	a.Origin = session.NodeID(r.u64())
	a.Seq = r.u64()
	a.ProxyIn = r.u8()&flagProxyIn != 0
	ip := r.addr4()
	bits := int(r.u8())
	if r.bad || bits > 32 {
		return Announce{}, fmt.Errorf("%w: address", ErrMalformedAnnounce)
	}
	a.IPv4 = netip.PrefixFrom(ip, bits)
	a.Hostname = string(r.take(int(r.u8())))
	ns := int(r.u8())
	for i := 0; i < ns && !r.bad; i++ {
		sa := r.addr4()
		sb := int(r.u8())
		f := r.u8()
		if sb > 32 {
			return Announce{}, fmt.Errorf("%w: subnet prefix length %d", ErrMalformedAnnounce, sb)
		}
		a.Subnets = append(a.Subnets, Subnet{Prefix: netip.PrefixFrom(sa, sb).Masked(), Proxy: f&flagSubnetProxy != 0})
	}
	nn := int(r.u16())
	if nn > maxNeighbors {
		return Announce{}, fmt.Errorf("%w: %d neighbours", ErrMalformedAnnounce, nn)
	}
	for i := 0; i < nn && !r.bad; i++ {
		id := session.NodeID(r.u64())
		a.Neighbors = append(a.Neighbors, Neighbor{ID: id, CostUS: r.u32()})
	}
	if nc := int(r.u16()); nc > maxCert {
		return Announce{}, fmt.Errorf("%w: certificate of %d bytes", ErrMalformedAnnounce, nc)
	} else if nc > 0 {
		a.Cert = bytes.Clone(r.take(nc))
	}
	ne := int(r.u8())
	if ne > MaxEndpoints {
		return Announce{}, fmt.Errorf("%w: %d endpoints", ErrMalformedAnnounce, ne)
	}
	for i := 0; i < ne && !r.bad; i++ {
		ea := r.addr4()
		a.Endpoints = append(a.Endpoints, netip.AddrPortFrom(ea, r.u16()))
	}
	if k := r.take(session.SigningKeyLen); k != nil {
		a.SigningKey = [session.SigningKeyLen]byte(k)
	}
	sig := r.take(session.SignatureLen)
	if r.bad {
		return Announce{}, fmt.Errorf("%w: truncated", ErrMalformedAnnounce)
	}
	if len(r.b) != 0 {
		return Announce{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformedAnnounce, len(r.b))
	}
	if id := session.NodeIDOf(a.SigningKey); id != a.Origin {
		return Announce{}, fmt.Errorf("%w: origin %v, signing key of node %v", ErrForgedAnnounce, a.Origin, id)
	}
	signed := b[:len(b)-session.SignatureLen]
	if !session.Verify(a.SigningKey, signed, [session.SignatureLen]byte(sig)) {
		return Announce{}, fmt.Errorf("%w: origin %v, bad signature", ErrForgedAnnounce, a.Origin)
	}
	a.wire = bytes.Clone(b)
	return a, nil
}
