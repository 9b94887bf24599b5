package lanfw

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The rules below are written as the nft CLI would compile them, so that
// `nft list table inet weft_<dev>` shows them in their usual form.

const (
	// reg is the register every match loads into.
	reg = 1
	// ipv4 header offsets of the source and destination address.
	ipv4SrcOffset = 12
	ipv4DstOffset = 16
	// tcpFlagsOffset is the offset of the flags byte in the TCP header.
	tcpFlagsOffset = 13
	tcpFlagSYN     = 0x02
	tcpFlagRST     = 0x04
	// tcpOptMaxseg is the kind of the TCP MSS option; its size field is 2
	// bytes at offset 2.
	tcpOptMaxseg       = 2
	tcpOptMaxsegOffset = 2
	tcpOptMaxsegLen    = 2
)

// masqueradeRule masquerades IPv4 packets that came in on dev, go to subnet
// and leave on another device.
func masqueradeRule(dev string, subnet netip.Prefix) []expr.Any {
	e := matchIPv4()
	e = append(e, matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpEq, dev)...)
	e = append(e, matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, dev)...)
	e = append(e, matchPrefix(ipv4DstOffset, subnet)...)
	return append(e, &expr.Masq{})
}

// mssInRule clamps the MSS of SYNs forwarded from dev into subnet.
func mssInRule(dev string, subnet netip.Prefix, mss uint16) []expr.Any {
	e := matchIPv4()
	e = append(e, matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpEq, dev)...)
	e = append(e, matchPrefix(ipv4DstOffset, subnet)...)
	return append(e, clampMSS(mss)...)
}

// mssOutRule clamps the MSS of SYNs forwarded from subnet out to dev.
func mssOutRule(dev string, subnet netip.Prefix, mss uint16) []expr.Any {
	e := matchIPv4()
	e = append(e, matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpEq, dev)...)
	e = append(e, matchPrefix(ipv4SrcOffset, subnet)...)
	return append(e, clampMSS(mss)...)
}

// matchIPv4 is `meta nfproto ipv4`, needed before IPv4 header matches in an
// inet table.
func matchIPv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// matchIfname is `meta iifname|oifname ==|!= "dev"`.
func matchIfname(key expr.MetaKey, op expr.CmpOp, dev string) []expr.Any {
	name := make([]byte, unix.IFNAMSIZ) // zero-padded, as the kernel stores it
	copy(name, dev)
	return []expr.Any{
		&expr.Meta{Key: key, Register: reg},
		&expr.Cmp{Op: op, Register: reg, Data: name},
	}
}

// matchPrefix is `ip saddr|daddr p` for the IPv4 address at offset.
func matchPrefix(offset uint32, p netip.Prefix) []expr.Any {
	addr := p.Addr().As4()
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits())) // /0: a shift by 32 gives 0
	return []expr.Any{
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: addr[:]},
	}
}

// clampMSS is `tcp flags & (syn|rst) == syn tcp option maxseg size > mss
// tcp option maxseg size set mss`: SYN and SYN-ACK only, and only lowering.
// A SYN without the option does not match (exthdr breaks the rule).
func clampMSS(mss uint16) []expr.Any {
	size := binary.BigEndian.AppendUint16(nil, mss)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: tcpFlagsOffset, Len: 1},
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 1, Mask: []byte{tcpFlagSYN | tcpFlagRST}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{tcpFlagSYN}},
		&expr.Exthdr{Op: expr.ExthdrOpTcpopt, Type: tcpOptMaxseg, Offset: tcpOptMaxsegOffset, Len: tcpOptMaxsegLen, DestRegister: reg},
		&expr.Cmp{Op: expr.CmpOpGt, Register: reg, Data: size},
		&expr.Immediate{Register: reg, Data: size},
		&expr.Exthdr{Op: expr.ExthdrOpTcpopt, Type: tcpOptMaxseg, Offset: tcpOptMaxsegOffset, Len: tcpOptMaxsegLen, SourceRegister: reg},
	}
}
