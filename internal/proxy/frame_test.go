package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
)

func TestFrameReadHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		typ     frameType
		n       int
		wantErr error
	}{
		{"data", []byte{3, 0x40, 0x00}, frameData, 16384, nil},
		{"fin", []byte{4, 0, 0}, frameFIN, 0, nil},
		{"rst", []byte{5, 0, 0}, frameRST, 0, nil},
		{"verdict", []byte{2, 0, 1}, frameVerdict, 1, nil},
		{"open", []byte{1, 0, 15}, frameOpen, 15, nil},
		{"empty input", nil, 0, 0, io.EOF},
		{"truncated header", []byte{3, 0}, 0, 0, io.ErrUnexpectedEOF},
		{"unknown type", []byte{9, 0, 0}, 0, 0, ErrMalformed},
		{"type zero", []byte{0, 0, 0}, 0, 0, ErrMalformed},
		{"data too long", []byte{3, 0x40, 0x01}, 0, 0, ErrMalformed},
		{"empty data", []byte{3, 0, 0}, 0, 0, ErrMalformed},
		{"fin with payload", []byte{4, 0, 1}, 0, 0, ErrMalformed},
		{"verdict of 2 bytes", []byte{2, 0, 2}, 0, 0, ErrMalformed},
		{"open too short", []byte{1, 0, 14}, 0, 0, ErrMalformed},
		{"open too long", []byte{1, 0, 40}, 0, 0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h [frameHeaderLen]byte
			typ, n, err := readHeader(bytes.NewReader(tt.in), &h)
			if !errors.Is(err, tt.wantErr) || (err == nil && (typ != tt.typ || n != tt.n)) {
				t.Fatalf("readHeader(%x) = %v, %d, %v; want %v, %d, %v", tt.in, typ, n, err, tt.typ, tt.n, tt.wantErr)
			}
		})
	}
}

func TestFrameRoundTrip(t *testing.T) {
	var wire []byte
	data := bytes.Repeat([]byte{0xab}, maxDataPayload)
	wire = appendFrame(wire, frameData, data)
	wire = appendFrame(wire, frameVerdict, []byte{byte(RefusedConn)})
	wire = appendFrame(wire, frameFIN, nil)
	r := bytes.NewReader(wire)
	buf := make([]byte, maxDataPayload)
	for _, want := range []struct {
		typ frameType
		p   []byte
	}{{frameData, data}, {frameVerdict, []byte{1}}, {frameFIN, nil}} {
		typ, p, err := readFrame(r, buf)
		if err != nil || typ != want.typ || !bytes.Equal(p, want.p) {
			t.Fatalf("readFrame = %v, %d bytes, %v; want %v, %d bytes", typ, len(p), err, want.typ, len(want.p))
		}
	}
	if _, _, err := readFrame(r, buf); err != io.EOF {
		t.Fatalf("readFrame at end = %v, want io.EOF", err)
	}
	if _, _, err := readFrame(bytes.NewReader([]byte{3, 0, 5, 1, 2}), buf); err != io.ErrUnexpectedEOF {
		t.Fatalf("readFrame of truncated payload = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestFrameOpenRequest(t *testing.T) {
	for _, req := range []OpenRequest{
		testReq,
		{Src: netip.MustParseAddrPort("[fd00::2]:1"), Dst: netip.MustParseAddrPort("[fd00::1]:65535")},
		{Src: netip.MustParseAddrPort("[::ffff:10.0.0.1]:80"), Dst: netip.MustParseAddrPort("192.168.1.1:0")},
	} {
		p, err := openPayload(req)
		if err != nil {
			t.Fatalf("openPayload(%v): %v", req, err)
		}
		got, err := parseOpen(p)
		if err != nil || got != req {
			t.Fatalf("parseOpen(openPayload(%v)) = %v, %v", req, got, err)
		}
	}
	for _, bad := range []OpenRequest{{}, {Src: testReq.Src}, {Src: netip.MustParseAddrPort("[fe80::1%eth0]:1"), Dst: testReq.Dst}} {
		if _, err := openPayload(bad); err == nil {
			t.Errorf("openPayload(%v) succeeded", bad)
		}
	}
	good, _ := openPayload(testReq)
	for name, p := range map[string][]byte{
		"empty":           {},
		"version 2":       append([]byte{2}, good[1:]...),
		"address len 5":   {1, 5, 1, 2, 3, 4, 5, 0, 1, 4, 1, 2, 3, 4, 0, 1},
		"truncated":       good[:len(good)-1],
		"trailing byte":   append(bytes.Clone(good), 0),
		"one address":     good[:8],
		"v6 len, v4 data": {1, 16, 1, 2, 3, 4, 0, 1, 4, 1, 2, 3, 4, 0, 1},
	} {
		if _, err := parseOpen(p); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseOpen(%s) = %v, want ErrMalformed", name, err)
		}
	}
}

func TestFrameVerdict(t *testing.T) {
	tests := []struct {
		r          Refusal
		refused    bool
		unreachble bool
	}{
		{RefusedConn, true, false},
		{RefusedUnreachable, false, true},
		{RefusedPolicy, true, false},
		{Refusal(77), true, false}, // unknown reasons from newer nodes still refuse
	}
	for _, tt := range tests {
		got, err := parseVerdict([]byte{byte(tt.r)})
		if err != nil || got != tt.r {
			t.Fatalf("parseVerdict(%d) = %v, %v", tt.r, got, err)
		}
		e := tt.r.err()
		if errors.Is(e, ErrRefused) != tt.refused || errors.Is(e, ErrUnreachable) != tt.unreachble {
			t.Errorf("%v.err() = %v", tt.r, e)
		}
	}
	if _, err := parseVerdict(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("parseVerdict(nil) = %v, want ErrMalformed", err)
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader and the payload
// parsers: no panic, and every frame accepted re-encodes to the bytes read.
func FuzzReadFrame(f *testing.F) {
	open, _ := openPayload(testReq)
	f.Add(appendFrame(nil, frameOpen, open))
	f.Add(appendFrame(appendFrame(nil, frameData, []byte("hello")), frameFIN, nil))
	f.Add(appendFrame(nil, frameVerdict, []byte{2}))
	f.Add([]byte{5, 0, 0, 3, 0xff, 0xff})
	f.Add([]byte{1, 0, 39, 1, 16})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		buf := make([]byte, maxDataPayload)
		for {
			before := len(in) - r.Len()
			typ, p, err := readFrame(r, buf)
			if err != nil {
				if errors.Is(err, ErrMalformed) || err == io.EOF || err == io.ErrUnexpectedEOF {
					return
				}
				t.Fatalf("readFrame: unexpected error %v", err)
			}
			if lo, hi, ok := payloadBounds(typ); !ok || len(p) < lo || len(p) > hi {
				t.Fatalf("readFrame accepted %v frame with %d bytes", typ, len(p))
			}
			if got := appendFrame(nil, typ, p); !bytes.Equal(got, in[before:len(in)-r.Len()]) {
				t.Fatalf("re-encoded %x, read %x", got, in[before:len(in)-r.Len()])
			}
			switch typ {
			case frameOpen:
				if req, err := parseOpen(p); err == nil {
					again, err := openPayload(req)
					if err != nil || !bytes.Equal(again, p) {
						t.Fatalf("open %v re-encodes to %x, %v; read %x", req, again, err, p)
					}
				}
			case frameVerdict:
				if _, err := parseVerdict(p); err != nil {
					t.Fatalf("verdict of valid length rejected: %v", err)
				}
			}
		}
	})
}
