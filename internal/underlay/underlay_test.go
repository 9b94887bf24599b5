package underlay

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/config"
)

type received struct {
	pkt  []byte
	from Link
}

func newTestTransport(t *testing.T) (*Transport, chan received) {
	t.Helper()
	ch := make(chan received, 64)
	done := make(chan struct{})
	tr := New(func(pkts []Packet) {
		for _, p := range pkts {
			Trust(p.From) // as a node does once a session is up: the link gets its full buffers
			select {
			case ch <- received{append([]byte(nil), p.Data...), p.From}:
			case <-done: // the test ended without reading everything: do not block Close
			}
		}
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { tr.Close() })
	t.Cleanup(func() { close(done) }) // runs first
	return tr, ch
}

func recv(t *testing.T, ch chan received) received {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no packet within 5s")
		return received{}
	}
}

// TestRoundTrip sends packets both ways over each transport on loopback and checks that bytes, order
// and the reply path (answering on the Link a packet came from) are intact.
func TestRoundTrip(t *testing.T) {
	for _, scheme := range []string{"udp", "tcp"} {
		t.Run(scheme, func(t *testing.T) {
			server, sch := newTestTransport(t)
			client, cch := newTestTransport(t)
			bound, err := server.Listen(config.URI{Scheme: scheme, Host: "127.0.0.1", Port: 0})
			if err != nil {
				t.Fatal(err)
			}
			if bound.Port == 0 {
				t.Fatal("Listen did not report the bound port")
			}
			ctx := context.Background()
			l, err := client.Dial(ctx, scheme, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), bound.Port))
			if err != nil {
				t.Fatal(err)
			}
			if l.Network() != scheme {
				t.Fatalf("Network() = %q, want %q", l.Network(), scheme)
			}
			sizes := []int{1, 100, 1400, 8000}
			for _, n := range sizes {
				if err := l.Send(bytes.Repeat([]byte{byte(n)}, n)); err != nil {
					t.Fatal(err)
				}
			}
			var back Link
			for _, n := range sizes {
				r := recv(t, sch)
				if !bytes.Equal(r.pkt, bytes.Repeat([]byte{byte(n)}, n)) {
					t.Fatalf("server got %d bytes, want %d bytes of %d", len(r.pkt), n, n)
				}
				back = r.from
			}
			if err := back.Send([]byte("reply")); err != nil {
				t.Fatal(err)
			}
			if r := recv(t, cch); string(r.pkt) != "reply" {
				t.Fatalf("client got %q", r.pkt)
			}
		})
	}
}

// dialPair starts a server transport listening on loopback and a client link to it.
func dialPair(t *testing.T, scheme string) (Link, chan received) {
	t.Helper()
	server, sch := newTestTransport(t)
	client, _ := newTestTransport(t)
	bound, err := server.Listen(config.URI{Scheme: scheme, Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := client.Dial(context.Background(), scheme, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), bound.Port))
	if err != nil {
		t.Fatal(err)
	}
	return l, sch
}

// TestSendBatch checks that a batch arrives whole and in order over each transport (sendmmsg for UDP,
// one write of several frames for TCP).
func TestSendBatch(t *testing.T) {
	for _, scheme := range []string{"udp", "tcp"} {
		t.Run(scheme, func(t *testing.T) {
			l, sch := dialPair(t, scheme)
			var batch [][]byte
			for i := 0; i < 100; i++ { // more than one sendmmsg call
				batch = append(batch, bytes.Repeat([]byte{byte(i)}, 1+i*13))
			}
			if err := l.SendBatch(batch); err != nil {
				t.Fatal(err)
			}
			for i, want := range batch {
				if r := recv(t, sch); !bytes.Equal(r.pkt, want) {
					t.Fatalf("packet %d: got %d bytes, want %d bytes of %d", i, len(r.pkt), len(want), i)
				}
			}
		})
	}
}

// TestTCPDone checks that a TCP link reports the death of its connection.
func TestTCPDone(t *testing.T) {
	l, sch := dialPair(t, "tcp")
	l.Send([]byte("x"))
	r := recv(t, sch)
	r.from.Close()
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client link not done after the server closed the connection")
	}
	if err := l.Send([]byte("y")); err == nil {
		// The first write after a peer close can succeed at the socket level; the second must not.
		time.Sleep(50 * time.Millisecond)
		if err := l.Send([]byte("z")); err == nil {
			t.Fatal("send on a dead TCP link succeeded")
		}
	}
}

// TestTCPOversize refuses a packet that does not fit the 2-byte frame length.
func TestTCPOversize(t *testing.T) {
	l, _ := dialPair(t, "tcp")
	if err := l.Send(make([]byte, MaxPacket+1)); err == nil {
		t.Fatal("oversized packet accepted")
	}
}
