package session

import "testing"

func TestHeaderParsing(t *testing.T) {
	pad := func(b []byte, n int) []byte { return append(b, make([]byte, n)...) }
	tests := []struct {
		name       string
		pkt        []byte
		wantType   uint8
		typeOK     bool
		sender     uint32
		senderOK   bool
		receiver   uint32
		receiverOK bool
	}{
		{name: "empty"},
		{name: "one byte", pkt: []byte{TypeData}},
		{name: "init", pkt: pad([]byte{1, 0, 0, 0, 0, 0, 1, 2}, 48), wantType: 1, typeOK: true, sender: 0x102, senderOK: true},
		{name: "init header only", pkt: []byte{1, 0, 0, 0, 0, 0, 1, 2}, wantType: 1, typeOK: true, sender: 0x102, senderOK: true},
		{name: "init truncated", pkt: []byte{1, 0, 0, 0, 0, 0, 1}},
		{name: "resp", pkt: []byte{2, 0, 0, 0, 0, 0, 0, 9, 0xFF, 0, 0, 1}, wantType: 2, typeOK: true, sender: 9, senderOK: true, receiver: 0xFF000001, receiverOK: true},
		{name: "final", pkt: pad([]byte{3, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 5}, 64), wantType: 3, typeOK: true, sender: 9, senderOK: true, receiver: 5, receiverOK: true},
		{name: "final truncated", pkt: []byte{3, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0}},
		{name: "data", pkt: pad([]byte{4, 0, 0, 0, 0xDE, 0xAD, 0xBE, 0xEF}, 24), wantType: 4, typeOK: true, receiver: 0xDEADBEEF, receiverOK: true},
		{name: "data truncated", pkt: pad([]byte{4, 0, 0, 0, 0xDE, 0xAD, 0xBE, 0xEF}, 7)},
		{name: "reserved byte set", pkt: pad([]byte{4, 0, 1, 0}, 30)},
		{name: "unknown type 0", pkt: pad([]byte{0, 0, 0, 0}, 30)},
		{name: "unknown type 5", pkt: pad([]byte{5, 0, 0, 0}, 30)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, ok := PacketType(tt.pkt); got != tt.wantType || ok != tt.typeOK {
				t.Errorf("PacketType = %d, %v; want %d, %v", got, ok, tt.wantType, tt.typeOK)
			}
			if got, ok := SenderIndex(tt.pkt); got != tt.sender || ok != tt.senderOK {
				t.Errorf("SenderIndex = %#x, %v; want %#x, %v", got, ok, tt.sender, tt.senderOK)
			}
			if got, ok := ReceiverIndex(tt.pkt); got != tt.receiver || ok != tt.receiverOK {
				t.Errorf("ReceiverIndex = %#x, %v; want %#x, %v", got, ok, tt.receiver, tt.receiverOK)
			}
		})
	}
}

// The handshake messages the package builds carry the indices the node passed.
func TestHandshakeHeaders(t *testing.T) {
	ini, msg1, err := NewInitiator(testConfig(t, false), 0x01020304, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, msg2, _, err := Respond(testConfig(t, false), msg1, 0x0A0B0C0D, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, msg3, _, err := ini.Finish(msg2, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name               string
		pkt                []byte
		typ                uint8
		sender, receiver   uint32
		wantReceiver, size bool
	}{
		{"msg1", msg1, TypeHandshakeInit, 0x01020304, 0, false, len(msg1) == msg1Overhead},
		{"msg2", msg2, TypeHandshakeResp, 0x0A0B0C0D, 0x01020304, true, len(msg2) == msg2Overhead},
		{"msg3", msg3, TypeHandshakeFinal, 0x01020304, 0x0A0B0C0D, true, len(msg3) == msg3Overhead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if typ, _ := PacketType(tt.pkt); typ != tt.typ {
				t.Errorf("type %d, want %d", typ, tt.typ)
			}
			if s, _ := SenderIndex(tt.pkt); s != tt.sender {
				t.Errorf("sender %#x, want %#x", s, tt.sender)
			}
			if r, ok := ReceiverIndex(tt.pkt); r != tt.receiver || ok != tt.wantReceiver {
				t.Errorf("receiver %#x (%v), want %#x", r, ok, tt.receiver)
			}
			if !tt.size {
				t.Errorf("empty-payload message is %d bytes, not the documented minimum", len(tt.pkt))
			}
		})
	}
}
