package session

import (
	"encoding/hex"
	"testing"

	"golang.org/x/crypto/argon2"
)

func TestDerivePSK(t *testing.T) {
	got := DerivePSK("office", "correct horse")
	// The protocol's parameters, spelled out: Argon2id, salt "weft/v1/"+name,
	// time 2, 64 MiB, 2 lanes, 32 bytes.
	want := argon2.IDKey([]byte("correct horse"), []byte("weft/v1/office"), 2, 64*1024, 2, 32)
	if hex.EncodeToString(got[:]) != hex.EncodeToString(want) {
		t.Fatalf("DerivePSK = %x, want %x", got, want)
	}
	// Pinned so that a change of parameters (which would split every
	// existing network) fails loudly.
	const golden = "52c43f031663d4668e805e609fcedec0fa7954b06b8c975993fa46de461cbceb"
	if hex.EncodeToString(got[:]) != golden {
		t.Fatalf("DerivePSK = %x, want pinned %s", got, golden)
	}
	tests := []struct{ name, network, secret string }{
		{"other secret", "office", "correct horse!"},
		{"other network", "office2", "correct horse"},
		{"name and secret boundary moved", "officecorrect", " horse"},
	}
	for _, tt := range tests {
		if DerivePSK(tt.network, tt.secret) == got {
			t.Errorf("%s: same PSK as (office, correct horse)", tt.name)
		}
	}
}

func TestCipherID(t *testing.T) {
	tests := []struct {
		c    CipherID
		want string
	}{
		{CipherChaCha20Poly1305, "chacha20-poly1305"},
		{CipherAES256GCM, "aes-256-gcm"},
		{0, "cipher(0)"},
		{200, "cipher(200)"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("CipherID(%d).String() = %q, want %q", uint8(tt.c), got, tt.want)
		}
	}
	_ = HasAESHardware() // must not panic on any CPU
}
