package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// Addresses of the echo test: the device's own address and a fake remote
// node behind it.
var (
	testLocal  = netip.MustParseAddr("10.99.0.1")
	testRemote = netip.MustParseAddr("10.99.0.2")
)

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// echoRequest builds an IPv4 ICMP echo request with correct checksums.
func echoRequest(src, dst netip.Addr, id, seq uint16, payload []byte) []byte {
	pkt := make([]byte, 20+8+len(payload))
	ip := pkt[:20]
	ip[0] = 0x45 // version 4, IHL 5
	binary.BigEndian.PutUint16(ip[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(ip[4:], 0x4242) // identification
	ip[8] = 64                                 // TTL
	ip[9] = 1                                  // ICMP
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	icmp := pkt[20:]
	icmp[0] = 8 // echo request
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	copy(icmp[8:], payload)
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return pkt
}

// isEchoReply reports whether pkt is a well-formed ICMP echo reply from src to
// dst; it returns a reason when pkt is an echo reply that is malformed.
func isEchoReply(pkt []byte, src, dst netip.Addr) (bool, string) {
	if len(pkt) < 28 || pkt[0]>>4 != 4 || pkt[9] != 1 {
		return false, ""
	}
	ihl := int(pkt[0]&0x0f) * 4
	s, d := src.As4(), dst.As4()
	if len(pkt) < ihl+8 || !bytes.Equal(pkt[12:16], s[:]) || !bytes.Equal(pkt[16:20], d[:]) || pkt[ihl] != 0 {
		return false, ""
	}
	if int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) {
		return true, "IP total length does not match the packet"
	}
	if checksum(pkt[:ihl]) != 0 {
		return true, "bad IP header checksum"
	}
	if checksum(pkt[ihl:]) != 0 {
		return true, "bad ICMP checksum"
	}
	return true, ""
}

// reader reads dev in a goroutine owned by the test until dev is closed.
type reader struct {
	pkts chan []byte
	errs chan error
}

// startReader starts reading dev; cleanup closes dev and waits for the reader.
func startReader(t *testing.T, dev Device) *reader {
	r := &reader{pkts: make(chan []byte, 256), errs: make(chan error, 1)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		bufs, sizes := readBufs(dev.BatchSize())
		for {
			n, err := dev.Read(bufs, sizes, Headroom)
			for i := range n {
				r.pkts <- bytes.Clone(bufs[i][Headroom : Headroom+sizes[i]])
			}
			if err != nil && !errors.Is(err, ErrTooManySegments) {
				r.errs <- err
				return
			}
		}
	}()
	t.Cleanup(func() {
		dev.Close()
		wg.Wait()
	})
	return r
}

// waitFor returns the first packet for which match is true.
func (r *reader) waitFor(t *testing.T, timeout time.Duration, match func([]byte) bool) []byte {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case pkt := <-r.pkts:
			if match(pkt) {
				return pkt
			}
			t.Logf("skipping unrelated packet of %d bytes: % x", len(pkt), pkt[:min(len(pkt), 20)])
		case err := <-r.errs:
			t.Fatalf("Read: %v", err)
		case <-deadline:
			t.Fatalf("no matching packet within %v", timeout)
		}
	}
}

func TestDeviceEcho(t *testing.T) {
	enterNetns(t)
	dev, err := Create("wt0", 1400)
	if err != nil {
		t.Fatal(err)
	}
	r := startReader(t, dev)
	t.Logf("batch size %d (offloads %v)", dev.BatchSize(), dev.BatchSize() > 1)
	if dev.Name() != "wt0" || dev.MTU() != 1400 || dev.BatchSize() < 1 {
		t.Fatalf("Name/MTU/BatchSize = %q/%d/%d, want wt0/1400/>=1", dev.Name(), dev.MTU(), dev.BatchSize())
	}

	// Before the link is up the kernel refuses packets: a per-packet error.
	req := echoRequest(testRemote, testLocal, 0x1234, 1, []byte("weft tun echo test"))
	if _, err := dev.Write([][]byte{writeBuf(req)}, Headroom); err == nil || errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write on a down link: %v, want a per-packet error", err)
	} else {
		t.Logf("Write on a down link: %v", err)
	}

	if err := Configure("wt0", netip.PrefixFrom(testLocal, 24), 1380); err != nil {
		t.Fatal(err)
	}
	if dev.MTU() != 1380 {
		t.Errorf("MTU after Configure = %d, want 1380", dev.MTU())
	}
	// Two requests in one batch; the kernel answers both.
	req2 := echoRequest(testRemote, testLocal, 0x1234, 2, []byte("second"))
	n, err := dev.Write([][]byte{writeBuf(req), writeBuf(req2)}, Headroom)
	if err != nil || n != 2 {
		t.Fatalf("Write = %d, %v; want 2, nil", n, err)
	}
	for _, want := range []struct {
		seq     uint16
		payload string
	}{{1, "weft tun echo test"}, {2, "second"}} {
		reply := r.waitFor(t, 5*time.Second, func(p []byte) bool {
			ok, bad := isEchoReply(p, testLocal, testRemote)
			if bad != "" {
				t.Errorf("echo reply: %s", bad)
			}
			return ok && binary.BigEndian.Uint16(p[26:]) == want.seq
		})
		if id := binary.BigEndian.Uint16(reply[24:]); id != 0x1234 {
			t.Errorf("reply id %#x, want 0x1234", id)
		}
		if got := string(reply[28:]); got != want.payload {
			t.Errorf("reply payload %q, want %q", got, want.payload)
		}
	}
}

func TestDeviceRulesAndClose(t *testing.T) {
	enterNetns(t)
	dev, err := Create("wt0", 1400)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	short := [][]byte{make([]byte, Headroom+1400)}
	if _, err := dev.Read(short, make([]int, 1), Headroom); err == nil {
		t.Error("Read with a buffer shorter than Headroom+MaxPacketSize succeeded")
	}
	if _, err := dev.Write([][]byte{make([]byte, 40)}, 4); err == nil {
		t.Error("Write with offset below Headroom succeeded")
	}

	errc := make(chan error, 1)
	go func() {
		bufs, sizes := readBufs(dev.BatchSize())
		_, err := dev.Read(bufs, sizes, Headroom)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	req := echoRequest(testRemote, testLocal, 1, 1, nil)
	if _, err := dev.Write([][]byte{writeBuf(req)}, Headroom); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
	if err := dev.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCreateErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		mtu  int
	}{
		{"wt0", 10},
		{"wt0", 70000},
		{"", 1400},
		{"a-name-much-too-long-for-linux", 1400},
	} {
		if dev, err := Create(tt.name, tt.mtu); err == nil {
			dev.Close()
			t.Errorf("Create(%q, %d) succeeded, want an error", tt.name, tt.mtu)
		}
	}
}

// udpPacket builds an IPv4 UDP datagram with correct checksums.
func udpPacket(src, dst netip.AddrPort, payload []byte) []byte {
	pkt := make([]byte, 28+len(payload))
	ip := pkt[:20]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(pkt)))
	ip[8] = 64
	ip[9] = 17 // UDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	udp := pkt[20:]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload)
	pseudo := make([]byte, 0, 12+len(udp))
	pseudo = append(pseudo, s[:]...)
	pseudo = append(pseudo, d[:]...)
	pseudo = append(pseudo, 0, 17, byte(len(udp)>>8), byte(len(udp)))
	pseudo = append(pseudo, udp...)
	binary.BigEndian.PutUint16(udp[6:], checksum(pseudo))
	return pkt
}

// TestDeviceWriteCoalesces shows the Write rules at work: two datagrams of one
// UDP flow written in one call are coalesced into the first buffer (which
// grows within its capacity), and the kernel still delivers two datagrams.
func TestDeviceWriteCoalesces(t *testing.T) {
	enterNetns(t)
	dev, err := Create("wt0", 1400)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	if err := Configure("wt0", netip.PrefixFrom(testLocal, 24), 1400); err != nil {
		t.Fatal(err)
	}
	dst := netip.AddrPortFrom(testLocal, 5000)
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(dst))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	src := netip.AddrPortFrom(testRemote, 4000)
	payloads := [][]byte{bytes.Repeat([]byte{'a'}, 100), bytes.Repeat([]byte{'b'}, 100)}
	bufs := make([][]byte, len(payloads))
	for i, p := range payloads {
		bufs[i] = make([]byte, Headroom, Headroom+MaxPacketSize)
		bufs[i] = append(bufs[i], udpPacket(src, dst, p)...)
	}
	if n, err := dev.Write(bufs, Headroom); err != nil || n != 2 {
		t.Fatalf("Write = %d, %v; want 2, nil", n, err)
	}
	if dev.BatchSize() > 1 {
		if got, want := len(bufs[0]), Headroom+28+200; got != want {
			t.Errorf("first buffer after Write is %d bytes, want %d (both payloads coalesced into it)", got, want)
		}
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	for _, want := range payloads {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("receive datagram: %v", err)
		}
		if from != src || !bytes.Equal(buf[:n], want) {
			t.Errorf("got %d bytes %q... from %v, want %d bytes of %q from %v", n, buf[:1], from, len(want), want[:1], src)
		}
	}
}
