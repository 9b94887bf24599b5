package session

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// fuzzFixture is a handshake with fixed identities and ephemeral keys, so
// that every fuzz worker process computes the same messages and the seed
// corpus means the same thing in each of them.
type fuzzFixture struct {
	initCfg, respCfg Config
	msg1, msg2, data []byte
	msg3             []byte
	ini              *Initiator // waiting for msg2
	recv             *Keypair   // responder's keypair; data already opened once
}

func fixedKey(b byte) [32]byte { return [32]byte{0: b, 31: b} }

func newFuzzFixture(f *testing.F) *fuzzFixture {
	f.Helper()
	fx := &fuzzFixture{}
	for i, cfg := range []*Config{&fx.initCfg, &fx.respCfg} {
		id, err := identityFromPrivate(fixedKey(byte(10 + i)))
		if err != nil {
			f.Fatal(err)
		}
		// A fixed clock: message 1 carries it, and the fixture must be the same every run.
		*cfg = Config{Identity: id, PSK: testPSK, Now: fixedClock(time.Unix(1_800_000_000, 0))}
	}
	var err error
	fx.ini, fx.msg1, err = newInitiator(fx.initCfg, 1, []byte("p1"), fixedKey(20))
	if err != nil {
		f.Fatal(err)
	}
	resp, msg2, _, err := respond(fx.respCfg, fx.msg1, 2, []byte("p2"), fixedKey(21))
	if err != nil {
		f.Fatal(err)
	}
	fx.msg2 = msg2
	// A second, identical initiator completes the handshake for the data
	// keys, leaving fx.ini untouched.
	ini2, _, err := newInitiator(fx.initCfg, 1, []byte("p1"), fixedKey(20))
	if err != nil {
		f.Fatal(err)
	}
	send, msg3, _, err := ini2.Finish(msg2, []byte("p3"))
	if err != nil {
		f.Fatal(err)
	}
	fx.msg3 = msg3
	if fx.recv, _, err = resp.Finish(msg3); err != nil {
		f.Fatal(err)
	}
	if fx.data, err = send.Seal(nil, []byte("fuzz")); err != nil {
		f.Fatal(err)
	}
	// Open the genuine packet now: if the fuzzer rebuilds it, it is a
	// replay and must still fail.
	if _, err := fx.recv.Open(nil, fx.data); err != nil {
		f.Fatal(err)
	}
	return fx
}

func FuzzPacketHeader(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, seed := range [][]byte{nil, {1}, {4, 0, 0, 0}, fx.msg1, fx.msg2, fx.data, fx.data[:DataHeaderLen], {3, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		typ, ok := PacketType(pkt)
		_, sok := SenderIndex(pkt)
		_, rok := ReceiverIndex(pkt)
		if !ok {
			if sok || rok {
				t.Fatalf("index reported for a packet PacketType rejects")
			}
			return
		}
		if len(pkt) < headerLen(typ) || pkt[1]|pkt[2]|pkt[3] != 0 {
			t.Fatalf("type %d accepted with %d bytes / reserved bytes set", typ, len(pkt))
		}
		if sok != (typ != TypeData) || rok != (typ != TypeHandshakeInit) {
			t.Fatalf("type %d: sender ok %v receiver ok %v", typ, sok, rok)
		}
	})
}

func FuzzRespond(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, seed := range [][]byte{nil, {1, 0, 0, 0}, fx.msg1, fx.msg1[:len(fx.msg1)-1], fx.msg2, fx.data} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		_, _, p1, err := Respond(fx.respCfg, pkt, 9, nil)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrPSKMismatch) {
				t.Fatalf("Respond error wraps no sentinel: %v", err)
			}
			return
		}
		// Only the genuine Noise message (under any sender index) may pass.
		if !bytes.Equal(pkt[initHeaderLen:], fx.msg1[initHeaderLen:]) || string(p1) != "p1" {
			t.Fatalf("Respond accepted a forged message 1")
		}
	})
}

func FuzzInitiatorFinish(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, seed := range [][]byte{nil, {2, 0, 0, 0}, fx.msg2, fx.msg2[:len(fx.msg2)-1], fx.msg1, fx.data} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		// A fresh initiator each time (same keys), so the genuine msg2
		// never leaves it finished for later inputs.
		ini, _, err := newInitiator(fx.initCfg, 1, []byte("p1"), fixedKey(20))
		if err != nil {
			t.Fatal(err)
		}
		kp, _, p2, err := ini.Finish(pkt, nil)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Finish error wraps no sentinel: %v", err)
			}
			return
		}
		if !bytes.Equal(pkt[respHeaderLen:], fx.msg2[respHeaderLen:]) || string(p2) != "p2" || kp.PeerID() != fx.respCfg.Identity.NodeID() {
			t.Fatalf("Finish accepted a forged message 2")
		}
	})
}

func FuzzOpen(f *testing.F) {
	fx := newFuzzFixture(f)
	tampered := bytes.Clone(fx.data)
	tampered[len(tampered)-1] ^= 1
	for _, seed := range [][]byte{nil, fx.data[:DataHeaderLen], fx.data[:Overhead], fx.msg1, fx.data, tampered} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if _, err := fx.recv.Open(nil, pkt); err == nil {
			t.Fatalf("Open accepted a packet that was never sealed (or a replay)")
		}
		if len(pkt) >= DataHeaderLen { // in place must not panic either
			_, _ = fx.recv.Open(pkt[DataHeaderLen:DataHeaderLen], pkt)
		}
	})
}

func FuzzResponderFinish(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, seed := range [][]byte{nil, {3, 0, 0, 0}, fx.msg3, fx.msg3[:len(fx.msg3)-1], fx.msg2, fx.data} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		// A fresh responder each time (same keys), waiting for message 3.
		r, _, _, err := respond(fx.respCfg, fx.msg1, 2, []byte("p2"), fixedKey(21))
		if err != nil {
			t.Fatal(err)
		}
		kp, p3, err := r.Finish(pkt)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Finish error wraps no sentinel: %v", err)
			}
			// A failed message 3 leaves the responder ready for the genuine one.
			if kp, _, err := r.Finish(fx.msg3); err != nil || kp.PeerID() != fx.initCfg.Identity.NodeID() {
				t.Fatalf("after a refused message 3 the genuine one failed: %v", err)
			}
			return
		}
		if !bytes.Equal(pkt[respHeaderLen:], fx.msg3[respHeaderLen:]) || string(p3) != "p3" || kp.PeerID() != fx.initCfg.Identity.NodeID() {
			t.Fatalf("Finish accepted a forged message 3")
		}
	})
}
