// Package tun is the node's TUN device and the kernel configuration around it.
//
// Packets move between the kernel and weft through a [Device], a batch-shaped
// interface with the same Read/Write contract as wireguard-go's tun.Device
// (offset = [Headroom]). On Linux, [Create] opens a wireguard-go TUN with
// virtio-net headers, so the kernel hands over TCP/UDP super-packets (TSO/USO)
// that Read splits into MTU-sized segments, and Write coalesces (GRO) TCP and
// UDP segments of one flow before handing them to the kernel. [Fake] is an
// in-memory Device for unit tests of other packages.
//
// The netlink half ([Configure], [AddRoute], [DelRoute], [Routes],
// [RouteDev], [Delete], [LocalPrefixes]) sets the device's address, MTU and
// link state and manages the routes weft installs, marked with
// [RouteProtocol]. Only IPv4 is handled: weft's virtual network is IPv4.
//
// Everything here acts on the network namespace of the calling OS thread.
package tun

import (
	"errors"
	"fmt"
)

// Headroom is the number of bytes every buffer handed to Read/Write must have
// free before the packet (wireguard-go's Linux TUN with vnet headers needs 10;
// we reserve 16).
const Headroom = 16

// MaxPacketSize is the largest IP packet a Device reads or writes in one
// buffer. Every buffer handed to Read must be at least Headroom+MaxPacketSize
// bytes long.
const MaxPacketSize = 65535

// MinMTU and MaxMTU bound the MTU accepted by Create and Configure: 68 is the
// IPv4 minimum (RFC 791), MaxPacketSize the largest packet a buffer holds.
const (
	MinMTU = 68
	MaxMTU = MaxPacketSize
)

// RouteProtocol is the rtnetlink protocol number weft marks its routes with:
// 87 (0x57, ASCII 'W'), assigned to nothing in the kernel's or iproute2's
// lists. `ip route show proto 87` lists weft's routes, and a restarted node
// can find and replace the routes a killed one left behind without touching
// anyone else's.
const RouteProtocol = 0x57

// ErrTooManySegments is returned by Device.Read when the kernel handed over a
// super-packet with more segments than there were buffers. The n packets
// returned with it are valid; the rest of that super-packet is dropped. It is
// not fatal: process the n packets and keep reading (and pass BatchSize()
// buffers to avoid it).
var ErrTooManySegments = errors.New("tun: too many segments for the buffers passed to Read")

// Device is a batch-oriented TUN device (same contract as
// golang.zx2c4.com/wireguard/tun.Device Read/Write, with offset = Headroom).
//
// Buffer rules (the Linux device enforces the first two and fails the whole
// call with an error naming the rule; Fake enforces the same rules):
//
//   - offset must be at least Headroom for both Read and Write. The bytes
//     before offset are scratch space owned by the device during the call.
//   - Read: len(sizes) >= len(bufs) and every bufs[i] must be at least
//     offset+MaxPacketSize bytes long, because one kernel super-packet is
//     split into as many MTU-sized segments as it holds and the split does not
//     bounds-check. Pass BatchSize() buffers; Read returns n packets at
//     bufs[i][offset:offset+sizes[i]] for i < n, and writes nothing else (the
//     headroom is left as it was). One Read returns the segments of one
//     kernel packet, so n ranges from 1 to len(bufs).
//   - Write: each bufs[i][offset:] is exactly one IP packet (len(bufs[i]) >
//     offset). Write MUTATES the batch: it overwrites the 10 bytes before
//     offset with a virtio-net header, and when it coalesces packets of one
//     TCP or UDP flow it rewrites IP total length and checksums, appends later
//     packets' payloads to an earlier packet's buffer (re-slicing bufs[i]
//     longer, within its capacity), and may swap elements of bufs. After Write
//     returns, treat the contents of bufs (both the slice headers and the
//     bytes) as garbage: rebuild the batch from your own buffer records.
//     A packet only grows within cap(bufs[i]) (Write never allocates), so
//     give buffers a capacity of offset+MaxPacketSize to let GRO build full
//     64 KiB packets; with less room packets are still written correctly,
//     just less coalesced. Coalescing also needs valid TCP/UDP checksums.
//   - Neither Read nor Write keeps a reference to bufs after it returns.
//
// Results and errors:
//
//   - Read: process the n packets first, then look at err. ErrTooManySegments
//     is not fatal (see it). errors.Is(err, os.ErrClosed) means the device was
//     closed (Close unblocks a pending Read this way). Any other Read error
//     is fatal for the device (a broken file descriptor, or the kernel
//     handing over a malformed virtio header): stop reading and tear the
//     device down, as wireguard-go does.
//   - Write returns len(bufs), nil when every packet reached the kernel. On a
//     non-nil error it returns 0: errors.Is(err, os.ErrClosed) is fatal; any
//     other error is a per-packet failure (EIO while the link is down, EINVAL
//     for a malformed packet), joined with errors.Join, and the other packets
//     of the batch were still written. Log it and go on; never retry the
//     batch, it would duplicate packets.
//
// Concurrency: one goroutine may Read while another Writes; concurrent Reads
// (or Writes) are serialized by the device. Close may be called from any
// goroutine and unblocks a pending Read.
type Device interface {
	// Read reads one or more packets into bufs (see the type comment), sets
	// sizes[i] for each and returns how many it read.
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	// Write writes the packets bufs[i][offset:] (see the type comment).
	Write(bufs [][]byte, offset int) (int, error)
	// BatchSize is how many buffers Read wants and the most packets worth
	// passing to one Write: 128 with offloads, 1 without.
	BatchSize() int
	// Name is the interface name, e.g. "weft0".
	Name() string
	// MTU is the device's current MTU.
	MTU() int
	// Close closes the device; pending and later Reads and Writes fail with
	// os.ErrClosed. Closing twice is harmless.
	Close() error
}

// checkMTU returns a user-facing error when mtu cannot be used.
func checkMTU(mtu int) error {
	if mtu < MinMTU || mtu > MaxMTU {
		return fmt.Errorf("MTU %d is out of range: use a value from %d to %d (1420 suits most underlays)", mtu, MinMTU, MaxMTU)
	}
	return nil
}

// checkReadBufs enforces the Read buffer rules of Device.
func checkReadBufs(bufs [][]byte, sizes []int, offset int) error {
	if offset < Headroom {
		return fmt.Errorf("tun read: offset %d is smaller than Headroom (%d)", offset, Headroom)
	}
	if len(bufs) == 0 {
		return errors.New("tun read: no buffers passed")
	}
	if len(sizes) < len(bufs) {
		return fmt.Errorf("tun read: %d sizes for %d buffers; pass one size per buffer", len(sizes), len(bufs))
	}
	for i, b := range bufs {
		if len(b) < offset+MaxPacketSize {
			return fmt.Errorf("tun read: buffer %d is %d bytes; each needs offset+MaxPacketSize = %d", i, len(b), offset+MaxPacketSize)
		}
	}
	return nil
}

// checkWriteBufs enforces the Write buffer rules of Device.
func checkWriteBufs(bufs [][]byte, offset int) error {
	if offset < Headroom {
		return fmt.Errorf("tun write: offset %d is smaller than Headroom (%d)", offset, Headroom)
	}
	for i, b := range bufs {
		if len(b) <= offset {
			return fmt.Errorf("tun write: buffer %d holds no packet after offset %d", i, offset)
		}
	}
	return nil
}
