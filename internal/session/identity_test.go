package session

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "weft")
	first, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %04o, want 0600", perm)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Errorf("state dir mode %04o, want 0700", perm)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state dir holds %d entries, want only %s (temp file left behind?)", len(entries), KeyFileName)
	}
	second, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	if second != first || second.NodeID() != first.NodeID() {
		t.Fatalf("identity changed across restarts: %s -> %s", first.NodeID(), second.NodeID())
	}
	data, _ := os.ReadFile(filepath.Join(dir, KeyFileName))
	if got := strings.TrimSpace(string(data)); got != hex.EncodeToString(first.Private[:]) {
		t.Fatalf("key file holds %q, want the private key in hex", got)
	}
}

func TestLoadIdentityErrors(t *testing.T) {
	valid := strings.Repeat("ab", 32) + "\n"
	tests := []struct {
		name     string
		content  string
		mode     os.FileMode
		wantErr  []string // substrings the user needs to see
		wantPriv string
	}{
		{name: "valid hex", content: valid, mode: 0o600, wantPriv: strings.Repeat("ab", 31)},
		{name: "valid, no newline, owner read-only", content: strings.TrimSpace(valid), mode: 0o400, wantPriv: strings.Repeat("ab", 31)},
		{name: "readable by group", content: valid, mode: 0o640, wantErr: []string{"chmod 600", "node.key"}},
		{name: "readable by others", content: valid, mode: 0o604, wantErr: []string{"chmod 600"}},
		{name: "empty", content: "", mode: 0o600, wantErr: []string{"corrupt", "node.key"}},
		{name: "not hex", content: strings.Repeat("zz", 32), mode: 0o600, wantErr: []string{"corrupt", "node.key"}},
		{name: "too short", content: strings.Repeat("ab", 31), mode: 0o600, wantErr: []string{"corrupt"}},
		{name: "raw bytes", content: strings.Repeat("\x01", 32), mode: 0o600, wantErr: []string{"corrupt"}},
		{name: "huge", content: strings.Repeat("a", 5000), mode: 0o600, wantErr: []string{"corrupt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, KeyFileName)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			id, err := LoadOrCreateIdentity(dir)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				// The middle bytes are stored as given (only the ends are clamped).
				if got := hex.EncodeToString(id.Private[1:31]); got != tt.wantPriv[2:] {
					t.Fatalf("private key %x not loaded from the file", id.Private)
				}
				return
			}
			if err == nil {
				t.Fatal("bad key file accepted")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if !strings.Contains(err.Error(), path) && !strings.Contains(err.Error(), KeyFileName) {
				t.Errorf("error %q does not name the file", err)
			}
			after, _ := os.ReadFile(path)
			if string(after) != tt.content {
				t.Error("a rejected key file was modified")
			}
		})
	}
	if _, err := LoadOrCreateIdentity(""); err == nil {
		t.Error("empty state directory accepted")
	}
}

func TestIdentityNeverPrintsPrivateKey(t *testing.T) {
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	slog.New(slog.NewTextHandler(&logs, nil)).Info("start", "identity", id)
	secret := hex.EncodeToString(id.Private[:])
	for _, out := range []string{fmt.Sprint(id), fmt.Sprintf("%v %+v %#v %s", id, id, id, id), logs.String()} {
		if strings.Contains(out, secret) || strings.Contains(out, fmt.Sprint(id.Private[0], " ", id.Private[1], " ", id.Private[2])) {
			t.Fatalf("output leaks the private key: %s", out)
		}
		if !strings.Contains(out, id.NodeID().String()) {
			t.Errorf("output %q does not show the node ID", out)
		}
	}
}

func TestNodeID(t *testing.T) {
	var pub [32]byte
	for i := range pub {
		pub[i] = byte(i)
	}
	// BLAKE2s-256(00 01 .. 1f) starts 05825607d7fdf2d8 (checked with Python's
	// hashlib.blake2s). A change here changes every node's ID.
	if got := NodeIDOf(pub).String(); got != "05825607d7fdf2d8" {
		t.Fatalf("NodeIDOf = %s, want 05825607d7fdf2d8", got)
	}
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if id.NodeID() != NodeIDOf(id.SigningPublic()) || id.NodeID() != id.Signer().NodeID() {
		t.Fatal("Identity.NodeID differs from NodeIDOf(SigningPublic())")
	}
	// The signing key derives from node.key alone: the same private key gives the same node ID.
	again, err := identityFromPrivate(id.Private)
	if err != nil {
		t.Fatal(err)
	}
	if again.NodeID() != id.NodeID() {
		t.Fatal("the same private key gave another node ID")
	}
	other, _ := GenerateIdentity()
	if other.NodeID() == id.NodeID() || other.SigningPublic() == id.SigningPublic() {
		t.Fatal("two identities share a signing key")
	}

	tests := []struct {
		in      string
		want    NodeID
		wantErr bool
	}{
		{in: "05825607d7fdf2d8", want: 0x05825607d7fdf2d8},
		{in: "05825607D7FDF2D8", want: 0x05825607d7fdf2d8},
		{in: "0000000000000000", want: 0},
		{in: "ffffffffffffffff", want: ^NodeID(0)},
		{in: "", wantErr: true},
		{in: "5825607d7fdf2d8", wantErr: true},
		{in: "05825607d7fdf2d80", wantErr: true},
		{in: "0x5825607d7fdf2d8", wantErr: true},
		{in: "+5825607d7fdf2d8", wantErr: true},
		{in: "05825607d7fdf2dg", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseNodeID(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseNodeID(%q) = %s, %v; want %s, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && strings.ToLower(tt.in) != got.String() {
			t.Errorf("String() = %s, want %s", got, strings.ToLower(tt.in))
		}
	}
	var back NodeID
	text, _ := NodeID(0xabc).MarshalText()
	if err := back.UnmarshalText(text); err != nil || back != 0xabc || string(text) != "0000000000000abc" {
		t.Errorf("text roundtrip: %q -> %s, %v", text, back, err)
	}
}
