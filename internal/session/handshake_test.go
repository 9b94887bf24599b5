package session

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestHandshakeRoundtrip(t *testing.T) {
	tests := []struct {
		name             string
		initAES, respAES bool
		want             CipherID
	}{
		{"neither has AES", false, false, CipherChaCha20Poly1305},
		{"only initiator has AES", true, false, CipherChaCha20Poly1305},
		{"only responder has AES", false, true, CipherChaCha20Poly1305},
		{"both have AES", true, true, CipherAES256GCM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			initCfg, respCfg := testConfig(t, tt.initAES), testConfig(t, tt.respAES)
			at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			initCfg.Now, respCfg.Now = fixedClock(at), fixedClock(at.Add(time.Second))

			ini, msg1, err := NewInitiator(initCfg, 0xA1A1, []byte("hello-1"))
			if err != nil {
				t.Fatalf("NewInitiator: %v", err)
			}
			resp, msg2, p1, err := Respond(respCfg, msg1, 0xB2B2, []byte("hello-2"))
			if err != nil {
				t.Fatalf("Respond: %v", err)
			}
			ikp, msg3, p2, err := ini.Finish(msg2, []byte("hello-3"))
			if err != nil {
				t.Fatalf("Initiator.Finish: %v", err)
			}
			rkp, p3, err := resp.Finish(msg3)
			if err != nil {
				t.Fatalf("Responder.Finish: %v", err)
			}
			for _, c := range []struct{ got, want string }{
				{string(p1), "hello-1"}, {string(p2), "hello-2"}, {string(p3), "hello-3"},
			} {
				if c.got != c.want {
					t.Errorf("payload = %q, want %q", c.got, c.want)
				}
			}
			if ikp.Cipher() != tt.want || rkp.Cipher() != tt.want {
				t.Errorf("ciphers = %s/%s, want %s", ikp.Cipher(), rkp.Cipher(), tt.want)
			}
			if ikp.PeerID() != respCfg.Identity.NodeID() || rkp.PeerID() != initCfg.Identity.NodeID() {
				t.Errorf("peer IDs %s/%s, want %s/%s", ikp.PeerID(), rkp.PeerID(), respCfg.Identity.NodeID(), initCfg.Identity.NodeID())
			}
			if ikp.PeerStatic() != respCfg.Identity.Public || rkp.PeerStatic() != initCfg.Identity.Public {
				t.Error("PeerStatic is not the other node's public key")
			}
			if ikp.LocalIndex() != 0xA1A1 || ikp.RemoteIndex() != 0xB2B2 || rkp.LocalIndex() != 0xB2B2 || rkp.RemoteIndex() != 0xA1A1 {
				t.Errorf("indices: initiator %x->%x responder %x->%x", ikp.LocalIndex(), ikp.RemoteIndex(), rkp.LocalIndex(), rkp.RemoteIndex())
			}
			if !ikp.Initiator() || rkp.Initiator() {
				t.Error("Initiator() flags wrong")
			}
			if !ikp.Created().Equal(at) || !rkp.Created().Equal(at.Add(time.Second)) {
				t.Errorf("Created = %v/%v, want the configured clock", ikp.Created(), rkp.Created())
			}
			for _, size := range []int{0, 1, 1400} {
				roundtrip(t, ikp, rkp, size)
				roundtrip(t, rkp, ikp, size)
			}
		})
	}
}

// roundtrip seals a size-byte message on from and opens it on to.
func roundtrip(t *testing.T, from, to *Keypair, size int) {
	t.Helper()
	msg := bytes.Repeat([]byte{0x5A}, size)
	pkt, err := from.Seal(nil, msg)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if len(pkt) != size+Overhead {
		t.Fatalf("packet is %d bytes, want %d", len(pkt), size+Overhead)
	}
	if idx, _ := ReceiverIndex(pkt); idx != to.LocalIndex() {
		t.Fatalf("packet receiver index %d, want %d", idx, to.LocalIndex())
	}
	// Only long messages: a short one may appear in random bytes by chance.
	if size >= 16 && bytes.Contains(pkt, msg) {
		t.Fatal("packet contains the plaintext")
	}
	got, err := to.Open(nil, pkt)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("Open returned %d bytes, not the sealed message", len(got))
	}
}

func TestRespondPSKMismatch(t *testing.T) {
	base := DerivePSK("office", "correct horse")
	tests := []struct {
		name string
		psk  [32]byte
	}{
		{"wrong secret", DerivePSK("office", "battery staple")},
		{"wrong network name", DerivePSK("home", "correct horse")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			initCfg, respCfg := testConfig(t, false), testConfig(t, false)
			initCfg.PSK, respCfg.PSK = tt.psk, base
			_, msg1, err := NewInitiator(initCfg, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _, _, err = Respond(respCfg, msg1, 2, nil)
			if !errors.Is(err, ErrPSKMismatch) {
				t.Fatalf("Respond error = %v, want ErrPSKMismatch", err)
			}
		})
	}
}

func TestRespondMalformed(t *testing.T) {
	cfg := testConfig(t, false)
	_, good, err := NewInitiator(testConfig(t, false), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	reserved := bytes.Clone(good)
	reserved[2] = 1
	wrongType := bytes.Clone(good)
	wrongType[0] = TypeHandshakeResp
	tests := []struct {
		name string
		msg1 []byte
	}{
		{"empty", nil},
		{"header only", good[:initHeaderLen]},
		{"truncated noise message", good[:initHeaderLen+noiseMsg1Min-1]},
		{"reserved byte set", reserved},
		{"wrong type", wrongType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, err := Respond(cfg, tt.msg1, 2, nil); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Respond error = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestRespondNoCommonCipher(t *testing.T) {
	ini, _, err := NewInitiator(testConfig(t, true), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A (future) initiator offering only AES-GCM to a node without AES.
	ini.payload1[0], ini.offered = CipherAES256GCM.bit(), CipherAES256GCM.bit()
	_, msg1, err := ini.message1()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Respond(testConfig(t, false), msg1, 2, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Respond error = %v, want ErrMalformed (no common cipher)", err)
	}
}

func TestConfigRequiresIdentity(t *testing.T) {
	if _, _, err := NewInitiator(Config{PSK: testPSK}, 1, nil); err == nil {
		t.Fatal("NewInitiator accepted a config without identity")
	}
	if _, _, _, err := Respond(Config{PSK: testPSK}, make([]byte, 100), 1, nil); err == nil {
		t.Fatal("Respond accepted a config without identity")
	}
	if _, _, err := NewInitiator(testConfig(t, false), 1, make([]byte, MaxHandshakePayload+1)); err == nil {
		t.Fatal("NewInitiator accepted an oversized payload")
	}
}

// A bad message 2 (forged, from another handshake, misaddressed) must be
// rejected without spoiling the handshake for the genuine one.
func TestInitiatorFinishRejects(t *testing.T) {
	initCfg, respCfg := testConfig(t, false), testConfig(t, false)
	ini, msg1, err := NewInitiator(initCfg, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, msg2, _, err := Respond(respCfg, msg1, 8, []byte("p2"))
	if err != nil {
		t.Fatal(err)
	}
	// A response to another handshake of the same initiator and index.
	_, otherMsg1, err := NewInitiator(initCfg, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, otherMsg2, _, err := Respond(respCfg, otherMsg1, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { m := bytes.Clone(msg2); m[i] ^= 1; return m }
	wrongIndex := bytes.Clone(msg2)
	wrongIndex[11]++
	tests := []struct {
		name string
		msg2 []byte
		want error
	}{
		{"ephemeral key flipped", flip(respHeaderLen), ErrDecrypt},
		{"static key flipped", flip(respHeaderLen + 40), ErrDecrypt},
		{"payload tag flipped", flip(len(msg2) - 1), ErrDecrypt},
		{"response to another handshake", otherMsg2, ErrDecrypt},
		{"wrong receiver index", wrongIndex, ErrMalformed},
		{"truncated", msg2[:len(msg2)-20], ErrMalformed},
		{"type 1 packet", msg1, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, err := ini.Finish(tt.msg2, nil); !errors.Is(err, tt.want) {
				t.Fatalf("Finish error = %v, want %v", err, tt.want)
			}
		})
	}
	kp, _, p2, err := ini.Finish(msg2, nil)
	if err != nil {
		t.Fatalf("genuine msg2 after rejected ones: %v", err)
	}
	if string(p2) != "p2" || kp.PeerID() != respCfg.Identity.NodeID() {
		t.Fatalf("genuine msg2 gave payload %q peer %s", p2, kp.PeerID())
	}
	if _, _, _, err := ini.Finish(msg2, nil); err == nil {
		t.Fatal("second Finish on a finished Initiator succeeded")
	}
}

func TestResponderFinishRejects(t *testing.T) {
	initCfg, respCfg := testConfig(t, false), testConfig(t, false)
	ini, msg1, err := NewInitiator(initCfg, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, msg2, _, err := Respond(respCfg, msg1, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	ikp, msg3, _, err := ini.Finish(msg2, []byte("p3"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { m := bytes.Clone(msg3); m[i] ^= 0x80; return m }
	tests := []struct {
		name string
		msg3 []byte
		want error
	}{
		{"static key flipped", flip(respHeaderLen), ErrDecrypt},
		{"payload flipped", flip(len(msg3) - 1), ErrDecrypt},
		{"wrong sender index", flip(7), ErrMalformed},
		{"wrong receiver index", flip(11), ErrMalformed},
		{"truncated", msg3[:respHeaderLen+noiseMsg3Min-1], ErrMalformed},
		{"message 2 instead", msg2, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := resp.Finish(tt.msg3); !errors.Is(err, tt.want) {
				t.Fatalf("Finish error = %v, want %v", err, tt.want)
			}
		})
	}
	rkp, p3, err := resp.Finish(msg3)
	if err != nil {
		t.Fatalf("genuine msg3 after rejected ones: %v", err)
	}
	if string(p3) != "p3" || rkp.PeerID() != initCfg.Identity.NodeID() {
		t.Fatalf("genuine msg3 gave payload %q peer %s", p3, rkp.PeerID())
	}
	roundtrip(t, ikp, rkp, 100)
	if _, _, err := resp.Finish(msg3); err == nil {
		t.Fatal("second Finish on a finished Responder succeeded")
	}
}

// Sessions are independent: a keypair from one handshake cannot open
// another's packets, even with the same indices and peers.
func TestKeypairsDifferPerHandshake(t *testing.T) {
	a, b := testConfig(t, false), testConfig(t, false)
	i1, _ := handshake(t, a, b)
	_, r2 := handshake(t, a, b)
	pkt, err := i1.Seal(nil, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Open(nil, pkt); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Open with another session's keypair: %v, want ErrDecrypt", err)
	}
}

// TestHandshakeForgedSigningKey: a member that knows the PSK but claims another node's signing key (and
// so its node ID) cannot sign its own Noise key with it; the handshake fails on the other side, in
// either role, and no keypair names the victim.
func TestHandshakeForgedSigningKey(t *testing.T) {
	victim, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	forger := func(cfg Config) Config {
		s := cfg.Identity.Signer()
		s.pub = victim.SigningPublic() // claims the victim's key, signs with its own
		cfg.Signer = s
		return cfg
	}
	t.Run("forging responder", func(t *testing.T) {
		initCfg, respCfg := testConfig(t, false), forger(testConfig(t, false))
		ini, msg1, err := NewInitiator(initCfg, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, msg2, _, err := Respond(respCfg, msg1, 2, []byte("p2"))
		if err != nil {
			t.Fatal(err)
		}
		if kp, _, _, err := ini.Finish(msg2, []byte("p3")); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Initiator.Finish of a forged binding = %v, %v; want ErrDecrypt", kp, err)
		}
	})
	t.Run("forging initiator", func(t *testing.T) {
		initCfg, respCfg := forger(testConfig(t, false)), testConfig(t, false)
		ini, msg1, err := NewInitiator(initCfg, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, msg2, _, err := Respond(respCfg, msg1, 2, []byte("p2"))
		if err != nil {
			t.Fatal(err)
		}
		_, msg3, _, err := ini.Finish(msg2, []byte("p3"))
		if err != nil {
			t.Fatal(err)
		}
		if kp, _, err := resp.Finish(msg3); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Responder.Finish of a forged binding = %v, %v; want ErrDecrypt", kp, err)
		}
	})
}
