package session

import (
	"testing"
	"time"
)

// testPSK is a fixed network key for tests (DerivePSK is slow on purpose).
var testPSK = [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}

func testConfig(t testing.TB, aes bool) Config {
	t.Helper()
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return Config{Identity: id, PSK: testPSK, AESHardware: aes}
}

// handshake runs a full handshake between fresh nodes and returns both
// keypairs (initiator first).
func handshake(t testing.TB, initCfg, respCfg Config) (*Keypair, *Keypair) {
	t.Helper()
	ini, msg1, err := NewInitiator(initCfg, 11, nil)
	if err != nil {
		t.Fatalf("NewInitiator: %v", err)
	}
	resp, msg2, _, err := Respond(respCfg, msg1, 22, nil)
	if err != nil {
		t.Fatalf("Respond: %v", err)
	}
	ikp, msg3, _, err := ini.Finish(msg2, nil)
	if err != nil {
		t.Fatalf("Initiator.Finish: %v", err)
	}
	rkp, _, err := resp.Finish(msg3)
	if err != nil {
		t.Fatalf("Responder.Finish: %v", err)
	}
	return ikp, rkp
}

func fixedClock(at time.Time) func() time.Time { return func() time.Time { return at } }
