package proxy

// Stream framing: how one proxied TCP flow crosses its KCP conversation (the
// conversation is a reliable byte stream; these frames give it meaning).
//
//	source node (Open)                              destination node (Accept callback)
//	frameOpen    {version, src ip:port, dst ip:port} ->  dials the original destination
//	             <- frameVerdict {0 = ok | Refusal}      Stream.Accept / Stream.Refuse
//	frameData    (1..16 KiB payload)  <->  frameData     Stream.Write -> peer's Stream.Read
//	frameFIN     (CloseWrite)          ->  peer's Read returns io.EOF; the peer may keep writing
//	frameRST     (Reset)               ->  peer's Read and Write return ErrReset
//
// Every frame is  type u8 | len u16 (big-endian) | payload[len].  An address is
// len u8 (4 or 16) | ip | port u16. Anything else is malformed and resets the
// stream; nothing here panics on bytes from the network.

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
)

// frameType is the first byte of every frame on a stream.
type frameType uint8

const (
	frameOpen    frameType = 1 // source -> destination: the flow's original 4-tuple
	frameVerdict frameType = 2 // destination -> source: 0 (accepted) or a Refusal
	frameData    frameType = 3 // payload bytes of the flow
	frameFIN     frameType = 4 // the sender will write no more data (half-close)
	frameRST     frameType = 5 // the sender aborted the flow
)

const (
	frameHeaderLen = 3
	// maxDataPayload is the largest payload of one data frame.
	maxDataPayload = 16 << 10
	// openVersion is the version byte of frameOpen this code speaks.
	openVersion = 1
	minAddrLen  = 1 + 4 + 2
	maxAddrLen  = 1 + 16 + 2
)

func (t frameType) String() string {
	switch t {
	case frameOpen:
		return "open"
	case frameVerdict:
		return "verdict"
	case frameData:
		return "data"
	case frameFIN:
		return "fin"
	case frameRST:
		return "rst"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// payloadBounds returns the payload lengths a frame of type t may have.
func payloadBounds(t frameType) (lo, hi int, ok bool) {
	switch t {
	case frameOpen:
		return 1 + 2*minAddrLen, 1 + 2*maxAddrLen, true
	case frameVerdict:
		return 1, 1, true
	case frameData:
		return 1, maxDataPayload, true
	case frameFIN, frameRST:
		return 0, 0, true
	}
	return 0, 0, false
}

// readHeader reads and checks one frame header. It returns io.EOF only when r
// ends cleanly before the header, io.ErrUnexpectedEOF inside it, and an error
// wrapping ErrMalformed for an unknown type or a length the type forbids.
func readHeader(r io.Reader, buf *[frameHeaderLen]byte) (frameType, int, error) {
	if _, err := io.ReadFull(r, buf[:]); err != nil {
		return 0, 0, err
	}
	return parseHeader(buf)
}

// parseHeader checks one frame header: an unknown type or a length the type
// forbids is an error wrapping ErrMalformed.
func parseHeader(buf *[frameHeaderLen]byte) (frameType, int, error) {
	t, n := frameType(buf[0]), int(binary.BigEndian.Uint16(buf[1:]))
	lo, hi, ok := payloadBounds(t)
	if !ok {
		return 0, 0, fmt.Errorf("%w: unknown frame type %d", ErrMalformed, buf[0])
	}
	if n < lo || n > hi {
		return 0, 0, fmt.Errorf("%w: %v frame with %d payload bytes (want %d..%d)", ErrMalformed, t, n, lo, hi)
	}
	return t, n, nil
}

// readFrame reads one whole frame; the payload is stored in buf, which must
// hold maxDataPayload bytes.
func readFrame(r io.Reader, buf []byte) (frameType, []byte, error) {
	var h [frameHeaderLen]byte
	t, n, err := readHeader(r, &h)
	if err != nil {
		return 0, nil, err
	}
	if len(buf) < n {
		return 0, nil, fmt.Errorf("read %v frame: buffer of %d bytes for %d-byte payload", t, len(buf), n)
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return t, buf[:n], nil
}

// appendFrame appends a frame to dst. payload must respect payloadBounds(t).
func appendFrame(dst []byte, t frameType, payload []byte) []byte {
	dst = append(dst, byte(t), 0, 0)
	binary.BigEndian.PutUint16(dst[len(dst)-2:], uint16(len(payload)))
	return append(dst, payload...)
}

// OpenRequest is a proxied flow's original 4-tuple, as the source node's
// netstack saw the client's SYN.
type OpenRequest struct {
	Src netip.AddrPort // the client
	Dst netip.AddrPort // the original destination
}

func (r OpenRequest) String() string { return r.Src.String() + "->" + r.Dst.String() }

// openPayload encodes the payload of a frameOpen for r.
func openPayload(r OpenRequest) ([]byte, error) {
	b := []byte{openVersion}
	for _, ap := range [2]netip.AddrPort{r.Src, r.Dst} {
		if !ap.IsValid() || ap.Addr().Zone() != "" {
			return nil, fmt.Errorf("open request %v: want two valid ip:port addresses without zone", r)
		}
		ip := ap.Addr().AsSlice()
		b = append(b, byte(len(ip)))
		b = append(b, ip...)
		b = binary.BigEndian.AppendUint16(b, ap.Port())
	}
	return b, nil
}

// parseOpen decodes the payload of a frameOpen.
func parseOpen(p []byte) (OpenRequest, error) {
	if len(p) < 1 || p[0] != openVersion {
		return OpenRequest{}, fmt.Errorf("%w: open request version %v, want %d", ErrMalformed, p[:min(len(p), 1)], openVersion)
	}
	p = p[1:]
	var aps [2]netip.AddrPort
	for i := range aps {
		if len(p) < 1 {
			return OpenRequest{}, fmt.Errorf("%w: open request truncated", ErrMalformed)
		}
		n := int(p[0])
		if (n != 4 && n != 16) || len(p) < 1+n+2 {
			return OpenRequest{}, fmt.Errorf("%w: open request address of %d bytes in %d", ErrMalformed, n, len(p)-1)
		}
		ip, _ := netip.AddrFromSlice(p[1 : 1+n])
		aps[i] = netip.AddrPortFrom(ip, binary.BigEndian.Uint16(p[1+n:]))
		p = p[1+n+2:]
	}
	if len(p) != 0 {
		return OpenRequest{}, fmt.Errorf("%w: %d stray bytes after open request", ErrMalformed, len(p))
	}
	return OpenRequest{Src: aps[0], Dst: aps[1]}, nil
}

// Refusal says why a destination node did not re-originate a flow.
type Refusal uint8

const (
	// RefusedConn: the original destination answered the dial with a RST
	// (ECONNREFUSED).
	RefusedConn Refusal = 1
	// RefusedUnreachable: the dial timed out or had no route.
	RefusedUnreachable Refusal = 2
	// RefusedPolicy: the destination node does not proxy this flow.
	RefusedPolicy Refusal = 3
)

func (r Refusal) String() string {
	switch r {
	case RefusedConn:
		return "connection refused at destination"
	case RefusedUnreachable:
		return "destination unreachable"
	case RefusedPolicy:
		return "refused by destination node policy"
	}
	return fmt.Sprintf("refused (reason %d)", uint8(r))
}

// err is the error Open returns for r: RefusedUnreachable matches
// ErrUnreachable, every other reason ErrRefused.
func (r Refusal) err() error {
	if r == RefusedUnreachable {
		return fmt.Errorf("%w (%v)", ErrUnreachable, r)
	}
	return fmt.Errorf("%w: %v", ErrRefused, r)
}

// verdictOK is the verdict payload byte of an accepted flow.
const verdictOK = 0

// parseVerdict decodes the payload of a frameVerdict: 0 for accepted, else
// the refusal.
func parseVerdict(p []byte) (Refusal, error) {
	if len(p) != 1 {
		return 0, fmt.Errorf("%w: verdict of %d bytes", ErrMalformed, len(p))
	}
	return Refusal(p[0]), nil
}
