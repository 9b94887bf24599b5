package underlay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/config"
)

// untrustingServer listens on loopback with a handler that never trusts a link (no session ever comes
// up) and counts the limits the transport reports.
func untrustingServer(t *testing.T, deadline time.Duration) (*Transport, netip.AddrPort, func(string) int) {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	tr := New(func([]Packet) {}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tr.handshakeDeadline = deadline
	tr.SetCounter(func(r string) { mu.Lock(); counts[r]++; mu.Unlock() })
	t.Cleanup(func() { tr.Close() })
	bound, err := tr.Listen(config.URI{Scheme: "tcp", Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return tr, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), bound.Port), func(r string) int {
		mu.Lock()
		defer mu.Unlock()
		return counts[r]
	}
}

// dialFrom opens a raw TCP connection to addr from source address src (any 127.x.y.z works on Linux).
func dialFrom(t *testing.T, src string, addr netip.AddrPort) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// closedWithin reports whether the server closes c within d (a read returns EOF or a reset).
func closedWithin(c *net.TCPConn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	_, err := c.Read(b[:])
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// TestTCPHandshakeDeadline: a connection on which no session comes up is closed after the deadline,
// and counted.
func TestTCPHandshakeDeadline(t *testing.T) {
	tr, addr, count := untrustingServer(t, 300*time.Millisecond)
	c := dialFrom(t, "127.0.0.1", addr)
	start := time.Now()
	if !closedWithin(c, 3*time.Second) {
		t.Fatal("an idle connection without a session was not closed within 3 s (deadline 300 ms)")
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the 300 ms deadline", el)
	}
	waitUntil(t, func() bool { return count("tcp_handshake_timeout") == 1 && tr.Untrusted() == 0 },
		func() string {
			return fmt.Sprintf("timeouts %d, untrusted %d", count("tcp_handshake_timeout"), tr.Untrusted())
		})
}

// TestTCPBigFrameBeforeSession: a frame bigger than any handshake message, before a session, closes the
// connection.
func TestTCPBigFrameBeforeSession(t *testing.T) {
	_, addr, count := untrustingServer(t, time.Minute)
	c := dialFrom(t, "127.0.0.1", addr)
	frame := binary.BigEndian.AppendUint16(nil, maxUntrustedFrame+1)
	c.Write(append(frame, make([]byte, maxUntrustedFrame+1)...))
	if !closedWithin(c, 3*time.Second) {
		t.Fatal("a 4097-byte frame before a session did not close the connection")
	}
	waitUntil(t, func() bool { return count("tcp_frame_before_session") == 1 },
		func() string { return fmt.Sprintf("counted %d", count("tcp_frame_before_session")) })
}

// TestTCPUntrustedLimits: a source address gets MaxUntrustedPerIP connections without a session, the
// next one is closed at once (and counted); in all, MaxUntrusted, where a new connection closes the
// oldest one. Sources here are loopback addresses 127.0.x.y.
func TestTCPUntrustedLimits(t *testing.T) {
	tr, addr, count := untrustingServer(t, time.Minute)
	var first []*net.TCPConn
	for i := 0; i < MaxUntrustedPerIP; i++ {
		first = append(first, dialFrom(t, "127.0.0.2", addr))
	}
	waitUntil(t, func() bool { return tr.Untrusted() == MaxUntrustedPerIP }, func() string { return fmt.Sprint(tr.Untrusted()) })
	extra := dialFrom(t, "127.0.0.2", addr)
	if !closedWithin(extra, 2*time.Second) {
		t.Fatalf("connection %d from one address was not closed", MaxUntrustedPerIP+1)
	}
	if closedWithin(first[0], 100*time.Millisecond) {
		t.Fatal("the per-address limit closed an admitted connection")
	}
	if got := count("tcp_conn_limit"); got != 1 {
		t.Fatalf("tcp_conn_limit = %d, want 1", got)
	}
	// Fill the table from other addresses: the oldest connection (first[0]) makes room for the last.
	for i := MaxUntrustedPerIP; i < MaxUntrusted; i++ {
		dialFrom(t, fmt.Sprintf("127.0.%d.%d", 1+i/200, 10+i%200), addr)
	}
	waitUntil(t, func() bool { return tr.Untrusted() == MaxUntrusted }, func() string { return fmt.Sprint(tr.Untrusted()) })
	dialFrom(t, "127.0.9.9", addr)
	if !closedWithin(first[0], 2*time.Second) {
		t.Fatal("at the global limit the oldest connection was not closed")
	}
	waitUntil(t, func() bool { return tr.Untrusted() == MaxUntrusted }, func() string { return fmt.Sprint(tr.Untrusted()) })
}

func waitUntil(t *testing.T, cond func() bool, msg func() string) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 3*time.Second {
			t.Fatal("after 3 s: " + msg())
		}
	}
}

// FuzzTCPFraming feeds a byte stream to a TCP listener whose node trusts a connection after its first
// frame (as after a handshake). The frames handed over must be exactly the complete frames of the
// stream, in order (empty ones skipped), up to the first frame that is too big before trust.
func FuzzTCPFraming(f *testing.F) {
	var mu sync.Mutex
	var got [][]byte
	tr := New(func(pkts []Packet) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range pkts {
			Trust(p.From)
			got = append(got, append([]byte(nil), p.Data...))
		}
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.Cleanup(func() { tr.Close() })
	bound, err := tr.Listen(config.URI{Scheme: "tcp", Host: "127.0.0.1"})
	if err != nil {
		f.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", bound.Port)
	frame := func(b []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...) }
	f.Add(frame([]byte("hello")))
	f.Add(append(frame(nil), frame([]byte{1, 2, 3})...))
	f.Add(append(frame([]byte("x")), frame(make([]byte, 9000))...))
	f.Add(frame(make([]byte, maxUntrustedFrame+1)))
	f.Add([]byte{0, 5, 1, 2})
	f.Fuzz(func(t *testing.T, stream []byte) {
		// What the reader must hand over.
		var want [][]byte
		for rest, trusted := stream, false; len(rest) >= 2; {
			n := int(binary.BigEndian.Uint16(rest))
			if len(rest) < 2+n {
				break
			}
			if n > 0 {
				if !trusted && n > maxUntrustedFrame {
					break
				}
				want = append(want, rest[2:2+n])
				trusted = true
			}
			rest = rest[2+n:]
		}
		mu.Lock()
		got = nil
		mu.Unlock()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(stream)
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c) // returns once the server has closed its end: it read everything it will
		c.Close()
		mu.Lock()
		defer mu.Unlock()
		if len(got) != len(want) {
			t.Fatalf("got %d frames, want %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d: got %d bytes, want %d", i, len(got[i]), len(want[i]))
			}
		}
	})
}
