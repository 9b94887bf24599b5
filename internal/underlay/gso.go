package underlay

// UDP segmentation offload (Linux 4.18+): one sendmsg carries several datagrams back to back, with a
// UDP_SEGMENT control message giving their size; the kernel sends them as separate datagrams of that
// size (the last may be shorter). Sealed tunnel packets of one batch are mostly of one size (full-MTU
// segments), so a batch of 64 becomes a handful of messages instead of 64.

import (
	"errors"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// gsoMaxSegments is the most datagrams in one message (UDP_MAX_SEGMENTS of the kernel).
	gsoMaxSegments = 64
	// gsoMaxBytes bounds the payload of one message (a UDP datagram's length field).
	gsoMaxBytes = 65507
	// gsoMaxSegment is the largest datagram segmented: what fits a 1500-byte path over IPv6. The
	// kernel refuses segments beyond the path MTU, where larger datagrams must be fragmented one by
	// one (a relayed full-size packet carries two session headers).
	gsoMaxSegment = 1500 - 40 - 8
)

// gsoCmsgSpace is the room one UDP_SEGMENT control message takes.
var gsoCmsgSpace = unix.CmsgSpace(2)

// gsoRun returns how many of pkts, from the first, can leave as one segmented message: all of the
// first one's size, except that the last may be shorter, at most gsoMaxSegments and gsoMaxBytes.
func gsoRun(pkts [][]byte) int {
	size := len(pkts[0])
	if size == 0 || size > gsoMaxSegment {
		return 1
	}
	n, total := 1, size
	for n < len(pkts) && n < gsoMaxSegments {
		l := len(pkts[n])
		if l > size || l == 0 || total+l > gsoMaxBytes {
			break
		}
		n++
		total += l
		if l < size {
			break // a shorter datagram ends the message
		}
	}
	return n
}

// appendGSOSize appends a UDP_SEGMENT control message for datagrams of size bytes to oob.
func appendGSOSize(oob []byte, size int) []byte {
	start := len(oob)
	oob = oob[:start+gsoCmsgSpace]
	clear(oob[start:])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[start]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&oob[start+unix.CmsgLen(0)])) = uint16(size)
	return oob
}

// gsoRefused reports whether a send error means the kernel or the device cannot segment UDP (old
// kernel, no checksum offload on the egress device, a path through IPsec), as opposed to an error of
// the network.
func gsoRefused(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOPROTOOPT) ||
		errors.Is(err, unix.EOPNOTSUPP)
}

// udpSocketBuffer is the receive and send buffer size of a UDP socket.
const udpSocketBuffer = 4 << 20

// setSocketBuffers sizes c's buffers to n bytes. SO_RCVBUFFORCE and SO_SNDBUFFORCE (weft has
// CAP_NET_ADMIN) go past net.core.rmem_max and wmem_max, which are 208 KiB on a stock kernel and would
// silently cap a plain SO_RCVBUF; without the capability the plain options are used.
func setSocketBuffers(c *net.UDPConn, n int) {
	_ = c.SetReadBuffer(n)
	_ = c.SetWriteBuffer(n)
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, n)
	})
}
