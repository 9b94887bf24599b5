package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/arq"
	"github.com/weft-vpn/weft/internal/session"
)

func TestParseSegment(t *testing.T) {
	kcpPkt := make([]byte, arq.HeaderLen)
	binary.LittleEndian.PutUint32(kcpPkt, 0xdeadbeef)
	for _, tc := range []struct {
		name string
		seg  []byte
		ok   bool
		want segment
	}{
		{"empty", nil, false, segment{}},
		{"unknown kind", append([]byte{9}, kcpPkt...), false, segment{}},
		{"short KCP packet", append([]byte{segToAcceptor}, kcpPkt[:10]...), false, segment{}},
		{"to acceptor", append([]byte{segToAcceptor}, kcpPkt...), true, segment{kind: segToAcceptor, conv: 0xdeadbeef}},
		{"to opener", append([]byte{segToOpener}, kcpPkt...), true, segment{kind: segToOpener, conv: 0xdeadbeef, mine: true}},
		{"reset of yours", []byte{segReset, 1, 0, 0, 0, 7}, true, segment{kind: segReset, conv: 7, mine: true}},
		{"reset of mine", []byte{segReset, 0, 0, 0, 1, 0}, true, segment{kind: segReset, conv: 256}},
		{"reset bad flag", []byte{segReset, 2, 0, 0, 0, 7}, false, segment{}},
		{"reset short", []byte{segReset, 1, 0, 0}, false, segment{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSegment(tc.seg)
			if (err == nil) != tc.ok {
				t.Fatalf("parseSegment = %+v, %v; want ok=%v", got, err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("error %v does not wrap ErrMalformed", err)
				}
				return
			}
			if got.kind != tc.want.kind || got.conv != tc.want.conv || got.mine != tc.want.mine {
				t.Errorf("parseSegment = %+v, want %+v", got, tc.want)
			}
		})
	}
	// A reset names the receiver's view of the conversation.
	k := convKey{peer: 5, id: 77, mine: true}
	got, err := parseSegment(appendReset(nil, k))
	if err != nil || got.conv != 77 || got.mine {
		t.Fatalf("reset of a conversation we opened parses as %+v, %v; the receiver did not open it", got, err)
	}
}

func FuzzParseSegment(f *testing.F) {
	f.Add([]byte{segReset, 1, 0, 0, 0, 7})
	f.Add(append([]byte{segToAcceptor}, make([]byte, arq.HeaderLen)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		sg, err := parseSegment(b)
		if err == nil && sg.kind != segReset && len(sg.body) < arq.HeaderLen {
			t.Fatalf("accepted a KCP packet of %d bytes", len(sg.body))
		}
	})
}

// FuzzTransportDeliver feeds random segments to a transport that has live conversations (one it
// opened, one a peer opened): nothing may panic, and the conversation table may not grow without
// bound (only segments that open a conversation create one, and MaxFlows caps them).
func FuzzTransportDeliver(f *testing.F) {
	open := make([]byte, 1+arq.HeaderLen+4)
	open[0] = segToAcceptor
	binary.LittleEndian.PutUint32(open[1:], 1234)
	open[1+4] = arq.CmdPush
	binary.LittleEndian.PutUint32(open[1+20:], 4)
	f.Add(open)
	f.Add([]byte{segReset, 0, 0, 0, 4, 210})
	f.Add([]byte{segToOpener, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		const maxFlows = 16
		accepted := make(chan *Stream, maxFlows)
		n := newFakeNet(0, 0)
		defer n.close()
		a := n.addOpts(t, TransportOptions{Self: nodeA, MaxSegment: 1380, MaxFlows: maxFlows,
			Accept: func(_ session.NodeID, _ OpenRequest, st *Stream) { st.Accept(); accepted <- st }})
		bt := n.add(t, nodeB, func(_ session.NodeID, _ OpenRequest, st *Stream) { st.Accept() }, KCPConfig{})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := a.Open(ctx, nodeB, testReq); err != nil {
			t.Fatal(err)
		}
		if _, err := bt.Open(ctx, nodeA, testReq); err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(b); i += 97 { // the input cut into segments from B and from a stranger
			seg := b[i:min(len(b), i+97)]
			a.Deliver(nodeB, seg)
			a.Deliver(session.NodeID(0x99), seg)
		}
		a.FlushInput()
		if st := a.Stats(); st.Conversations > maxFlows {
			t.Fatalf("%d conversations, cap %d", st.Conversations, maxFlows)
		}
	})
}
