package arq

import (
	"encoding/binary"
	"testing"
)

// liveConv returns a Conv (RecvWindow 16) with data queued and in flight and segments received in and
// out of order.
func liveConv() *Conv {
	c := New(7, Config{MTU: 200, SendWindow: 8, RecvWindow: 16}, func([]byte) {})
	c.Send(make([]byte, 20*c.MSS()+17))
	c.Flush(100)
	for _, sn := range []uint32{0, 1, 3, 5, 9} {
		c.Input(rawSeg(7, CmdPush, 0, 16, 90, sn, 0, []byte("data")), 101)
	}
	c.Input(rawSeg(7, CmdAck, 0, 16, 100, 2, 1, nil), 102)
	return c
}

func FuzzInput(f *testing.F) {
	f.Add(rawSeg(7, CmdPush, 0, 16, 1, 2, 0, []byte("hello")))
	f.Add(rawSeg(7, CmdPush, 0, 16, 1, 15, 0, []byte("far")))
	f.Add(cat(rawSeg(7, CmdAck, 0, 0, 100, 3, 2, nil), rawSeg(7, CmdAck, 0, 5, 100, 5, 2, nil)))
	f.Add(rawSeg(7, CmdWask, 0, 0, 1, 0, 8, nil))
	f.Add(rawSeg(7, CmdWins, 0, 1000, 1, 0, 0xfffffff0, nil))
	f.Add(cat(rawSeg(7, CmdPush, 0, 16, 1, 4, 0, []byte("x")), rawSeg(7, CmdPush, 0, 16, 1, 2, 0, []byte("y")), []byte{7, 0}))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		c := liveConv()
		defer c.Release()
		for i, now := range []uint32{103, 400, 0xfffffff0} {
			_ = c.Input(pkt, now)
			checkBounds(t, c)
			if i == 1 {
				buf := make([]byte, 100)
				c.Recv(buf)
			}
			c.Flush(now + 1)
			if len(c.acks) != 0 {
				t.Fatal("acks left after Flush")
			}
			if at, ok := c.Deadline(); ok && diff(at, now+1) > int32(c.cfg.MaxRTO)+probeMax {
				t.Fatalf("deadline %d ms ahead", diff(at, now+1))
			}
			checkBounds(t, c)
			// Also feed the packet with its conv rewritten, so that more of it is processed.
			if len(pkt) >= 4 {
				q := append([]byte(nil), pkt...)
				binary.LittleEndian.PutUint32(q, 7)
				_ = c.Input(q, now+2)
				checkBounds(t, c)
			}
		}
	})
}

func checkBounds(t *testing.T, c *Conv) {
	t.Helper()
	w := c.cfg.RecvWindow
	if c.Readable() > w*c.MSS() || c.rcvQueue.len() > w || c.oooCount >= w || c.buffered() > 2*w {
		t.Fatalf("readable %d, queued %d, out of order %d", c.Readable(), c.rcvQueue.len(), c.oooCount)
	}
	if len(c.ooo) > 2*w {
		t.Fatalf("ring of %d", len(c.ooo))
	}
	if c.sndNxt-c.sndUna > uint32(c.cfg.SendWindow) || c.flight.len() != int(c.sndNxt-c.sndUna) {
		t.Fatalf("flight %d, una %d nxt %d", c.flight.len(), c.sndUna, c.sndNxt)
	}
}
