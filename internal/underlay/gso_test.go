package underlay

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func sizes(ls ...int) [][]byte {
	var ps [][]byte
	for _, l := range ls {
		ps = append(ps, make([]byte, l))
	}
	return ps
}

func TestGSORun(t *testing.T) {
	many := make([]int, 100)
	for i := range many {
		many[i] = 1000
	}
	cases := []struct {
		name string
		pkts [][]byte
		want int
	}{
		{"single", sizes(1400), 1},
		{"equal", sizes(1400, 1400, 1400), 3},
		{"shorter last", sizes(1400, 1400, 700, 1400), 3},
		{"longer breaks", sizes(700, 1400), 1},
		{"empty first", sizes(0, 0), 1},
		{"empty later", sizes(1400, 0), 1},
		{"segment cap", sizes(many...), gsoMaxSegments},
		{"too big for a 1500-byte path", sizes(1476, 1476, 1476), 1},
		{"byte cap", sizes(1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400,
			1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400,
			1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400), gsoMaxBytes / 1400},
	}
	for _, c := range cases {
		if got := gsoRun(c.pkts); got != c.want {
			t.Errorf("%s: gsoRun = %d, want %d", c.name, got, c.want)
		}
	}
}

// TestSendBatchSegmented sends runs of equal-sized packets (which leave as segmented messages) mixed
// with odd sizes over loopback UDP: every packet must arrive as its own datagram, whole and in order,
// and loopback must have taken the segmented messages (no fallback).
func TestSendBatchSegmented(t *testing.T) {
	l, sch := dialPair(t, "udp")
	var batch [][]byte
	add := func(n, size int) {
		for i := 0; i < n; i++ {
			p := bytes.Repeat([]byte{byte(len(batch))}, size)
			copy(p, fmt.Sprintf("%d/", len(batch)))
			batch = append(batch, p)
		}
	}
	add(150, 1400) // more than one message and more than one sendmmsg
	add(1, 700)
	add(10, 1400)
	add(5, 200)
	add(1, 1400)
	if err := l.SendBatch(batch); err != nil {
		t.Fatal(err)
	}
	for i, want := range batch {
		if r := recv(t, sch); !bytes.Equal(r.pkt, want) {
			t.Fatalf("packet %d: got %d bytes starting %q, want %d bytes starting %q", i, len(r.pkt), r.pkt[:min(8, len(r.pkt))], len(want), want[:8])
		}
	}
	if l.(*udpLink).sock.noGSO.Load() {
		t.Error("the kernel refused UDP segmentation offload on loopback; SendBatch fell back to one datagram per packet")
	}
}

// TestSocketBuffers: a UDP socket gets its 4 MiB buffers even where net.core.rmem_max is lower (the
// kernel reports twice the size set).
func TestSocketBuffers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SO_RCVBUFFORCE needs CAP_NET_ADMIN (root)")
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	setSocketBuffers(c, udpSocketBuffer)
	rc, _ := c.SyscallConn()
	var rcv, snd int
	rc.Control(func(fd uintptr) {
		rcv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		snd, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	if rcv < udpSocketBuffer || snd < udpSocketBuffer {
		t.Errorf("socket buffers receive %d, send %d bytes; want at least %d each", rcv, snd, udpSocketBuffer)
	}
}

// TestSendBatchError: a batch the kernel refuses (datagrams larger than UDP allows) returns an error,
// and does not panic or loop.
func TestSendBatchError(t *testing.T) {
	l, _ := dialPair(t, "udp")
	if err := l.SendBatch([][]byte{make([]byte, 70000), make([]byte, 70000)}); err == nil {
		t.Fatal("SendBatch of two 70000-byte datagrams gave no error")
	}
	// A GSO run the kernel refuses (EMSGSIZE or EINVAL) must not panic either.
	big := make([][]byte, 3)
	for i := range big {
		big[i] = make([]byte, 30000)
	}
	_ = l.SendBatch(big)
}
