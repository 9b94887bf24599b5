package proxy

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/session"
)

func TestKCPConfigDefaults(t *testing.T) {
	got := KCPConfig{}.withDefaults()
	want := KCPConfig{Interval: 10 * time.Millisecond, Window: 1024, Resend: 2, StreamBuffer: 1 << 20, SessionBuffer: 16 << 20}
	if got != want {
		t.Fatalf("defaults = %+v, want %+v", got, want)
	}
	if r := (KCPConfig{Resend: -1}).withDefaults().Resend; r != 0 {
		t.Errorf("Resend -1 -> %d, want 0 (fast resend off)", r)
	}
	if c := (KCPConfig{Window: 64, Interval: 20 * time.Millisecond}).withDefaults(); c.Window != 64 || c.Interval != 20*time.Millisecond {
		t.Errorf("explicit values overridden: %+v", c)
	}
}

func TestKCPConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		c  KCPConfig
		ok bool
	}{
		{KCPConfig{}, true},
		{KCPConfig{Window: 2048, StreamBuffer: 4 << 20, SessionBuffer: 64 << 20}, true},
		{KCPConfig{Interval: -time.Millisecond}, false},
		{KCPConfig{Window: -1}, false},
		{KCPConfig{Window: 70000}, false},
		{KCPConfig{StreamBuffer: 32 << 20}, false}, // above the default session buffer
		{KCPConfig{SessionBuffer: -1}, false},
	} {
		if err := tt.c.validate(); (err == nil) != tt.ok {
			t.Errorf("validate(%+v) = %v, want ok=%v", tt.c, err, tt.ok)
		}
	}
}

// kcpSeg builds one KCP segment header with a payload of n bytes.
func kcpSeg(conv uint32, cmd byte, sn, una uint32, n int) []byte {
	b := make([]byte, kcpHeaderLen+n)
	binary.LittleEndian.PutUint32(b, conv)
	b[4] = cmd
	binary.LittleEndian.PutUint32(b[12:], sn)
	binary.LittleEndian.PutUint32(b[16:], una)
	binary.LittleEndian.PutUint32(b[20:], uint32(n))
	return b
}

func TestKCPPipeConnWriteTo(t *testing.T) {
	var sent [][]byte
	stats := &counters{}
	pc := &pipeConn{self: nodeA, peer: nodeB, prefix: segToListener, stats: stats, done: make(chan struct{}),
		send: func(dst session.NodeID, seg []byte) error {
			if dst != nodeB {
				t.Errorf("sent to %s, want %s", dst, nodeB)
			}
			sent = append(sent, append([]byte(nil), seg...))
			return errors.New("queue full")
		}}
	packets := [][]byte{
		kcpSeg(7, kcpCmdPush, 0, 0, 10),
		append(kcpSeg(7, kcpCmdPush, 1, 0, 5), kcpSeg(7, kcpCmdPush, 2, 0, 0)...),
		kcpSeg(7, 82 /* ACK */, 0, 0, 0),
		kcpSeg(7, kcpCmdPush, 1, 0, 5),                                             // retransmission
		append(kcpSeg(7, kcpCmdPush, 3, 0, 1), kcpSeg(7, kcpCmdPush, 0, 0, 10)...), // one new, one again
		kcpSeg(7, kcpCmdPush, 4, 0, 1000)[:40],                                     // truncated: counted once, no panic
	}
	for _, p := range packets {
		if n, err := pc.WriteTo(p, nodeAddr(nodeB)); n != len(p) || err != nil {
			t.Fatalf("WriteTo = %d, %v; want %d, nil (send errors are drops)", n, err, len(p))
		}
	}
	if len(sent) != len(packets) || sent[0][0] != segToListener || string(sent[0][1:]) != string(packets[0]) {
		t.Fatalf("sent %d segments, first %x", len(sent), sent[0])
	}
	if r := stats.retransmits.Load(); r != 2 {
		t.Errorf("retransmits = %d, want 2", r)
	}
	if s, e := stats.segmentsSent.Load(), stats.sendErrors.Load(); s != 6 || e != 6 {
		t.Errorf("segmentsSent %d, sendErrors %d; want 6, 6", s, e)
	}
	pc.Close()
	if _, err := pc.WriteTo(packets[0], nil); err == nil {
		t.Error("WriteTo after Close succeeded")
	}
	if _, _, err := pc.ReadFrom(nil); err == nil {
		t.Error("ReadFrom after Close succeeded")
	}
}

func TestKCPPeek(t *testing.T) {
	h, ok := peekKCP(kcpSeg(0xdeadbeef, kcpCmdPush, 5, 9, 0))
	if !ok || h != (kcpHead{conv: 0xdeadbeef, cmd: kcpCmdPush, sn: 5, una: 9}) {
		t.Fatalf("peekKCP = %+v, %v", h, ok)
	}
	if _, ok := peekKCP(make([]byte, kcpHeaderLen-1)); ok {
		t.Fatal("peekKCP accepted a short packet")
	}
	if seg := resetSegment(segToDialer, 0x01020304); string(seg) != "\x03\x02\x01\x02\x03\x04" {
		t.Fatalf("resetSegment = %x", seg)
	}
}

// TestKCPSegmentSize checks that no segment handed to Send exceeds MaxSegment.
func TestKCPSegmentSize(t *testing.T) {
	const maxSeg = 600
	n := newFakeNet(0, 0)
	defer n.close()
	var tooBig, total atomic.Int64
	a := n.addOpts(t, Options{Self: nodeA, MaxSegment: maxSeg, Send: func(_ session.NodeID, seg []byte) error {
		total.Add(1)
		if len(seg) > maxSeg {
			tooBig.Add(1)
		}
		return nil
	}})
	got := make(chan *Stream, 1)
	n.add(t, nodeB, acceptInto(got), KCPConfig{})
	sa := openT(t, a, nodeB)
	sb := recvT(t, got)
	sa.Write(make([]byte, 200<<10))
	readN(t, sb, 200<<10)
	if total.Load() < 200<<10/maxSeg || tooBig.Load() != 0 {
		t.Fatalf("%d of %d segments exceed MaxSegment %d", tooBig.Load(), total.Load(), maxSeg)
	}
}
