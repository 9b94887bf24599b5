package session

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
)

var cipherChoices = []struct {
	name string
	aes  bool
}{
	{"chacha20-poly1305", false},
	{"aes-256-gcm", true},
}

func keypairs(t testing.TB, aes bool) (*Keypair, *Keypair) {
	t.Helper()
	return handshake(t, testConfig(t, aes), testConfig(t, aes))
}

func TestOpenRejectsTampering(t *testing.T) {
	for _, c := range cipherChoices {
		t.Run(c.name, func(t *testing.T) {
			send, recv := keypairs(t, c.aes)
			good, err := send.Seal(nil, []byte("an inner message of some length"))
			if err != nil {
				t.Fatal(err)
			}
			flip := func(i int) []byte { p := bytes.Clone(good); p[i] ^= 1; return p }
			tests := []struct {
				name string
				pkt  []byte
				want error
			}{
				{"ciphertext byte", flip(DataHeaderLen + 3), ErrDecrypt},
				{"tag byte", flip(len(good) - 1), ErrDecrypt},
				{"counter in header", flip(15), ErrDecrypt},
				{"receiver index", flip(7), ErrMalformed},
				{"type byte", flip(0), ErrMalformed},
				{"reserved byte", flip(1), ErrMalformed},
				{"truncated tag", good[:len(good)-1], ErrDecrypt},
				{"shorter than header and tag", good[:Overhead-1], ErrMalformed},
				{"header only", good[:DataHeaderLen], ErrMalformed},
				{"appended byte", append(bytes.Clone(good), 0), ErrDecrypt},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					dst := []byte("keep")
					got, err := recv.Open(dst, tt.pkt)
					if !errors.Is(err, tt.want) {
						t.Fatalf("Open error = %v, want %v", err, tt.want)
					}
					if string(got) != "keep" {
						t.Fatalf("Open changed dst on error: %q", got)
					}
				})
			}
			// Rejected forgeries must not have burnt the counter.
			if _, err := recv.Open(nil, good); err != nil {
				t.Fatalf("genuine packet after forgeries: %v", err)
			}
		})
	}
}

func TestOpenReplay(t *testing.T) {
	send, recv := keypairs(t, false)
	var pkts [][]byte
	for i := 0; i < ReplayWindowSize+2; i++ {
		p, err := send.Seal(nil, []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, p)
	}
	steps := []struct {
		name string
		pkt  int
		want error
	}{
		{"first", 1, nil},
		{"replayed", 1, ErrReplay},
		{"earlier, reordered", 0, nil},
		{"newest", ReplayWindowSize + 1, nil},
		{"oldest still in window", 2, nil},
		{"replay of newest", ReplayWindowSize + 1, ErrReplay},
		{"in window, new", ReplayWindowSize, nil},
	}
	for _, s := range steps {
		if _, err := recv.Open(nil, pkts[s.pkt]); !errors.Is(err, s.want) {
			t.Fatalf("%s: Open(packet %d) = %v, want %v", s.name, s.pkt, err, s.want)
		}
	}
	// One more counter and packet 2 falls out of the window. Packet 3 is new
	// but now too old too.
	p, err := send.Seal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recv.Open(nil, p); err != nil {
		t.Fatal(err)
	}
	if _, err := recv.Open(nil, pkts[1]); !errors.Is(err, ErrReplay) {
		t.Fatalf("packet behind the window: %v, want ErrReplay", err)
	}
}

func TestInPlace(t *testing.T) {
	for _, c := range cipherChoices {
		t.Run(c.name, func(t *testing.T) {
			send, recv := keypairs(t, c.aes)
			msg := bytes.Repeat([]byte("0123456789"), 140)
			buf := make([]byte, DataHeaderLen+len(msg), len(msg)+Overhead)
			copy(buf[DataHeaderLen:], msg)
			pkt, err := send.SealInPlace(buf, len(msg))
			if err != nil {
				t.Fatalf("SealInPlace: %v", err)
			}
			if len(pkt) != len(msg)+Overhead || &pkt[0] != &buf[0] {
				t.Fatal("SealInPlace did not seal into the caller's buffer")
			}
			got, err := recv.Open(pkt[DataHeaderLen:DataHeaderLen], pkt)
			if err != nil {
				t.Fatalf("in-place Open: %v", err)
			}
			if !bytes.Equal(got, msg) || &got[0] != &pkt[DataHeaderLen] {
				t.Fatal("in-place Open did not decrypt into the packet")
			}
			if _, err := send.SealInPlace(make([]byte, 10, len(msg)+Overhead-1), len(msg)); err == nil {
				t.Fatal("SealInPlace accepted a buffer without room for the tag")
			}
			if _, err := send.SealInPlace(buf, -1); err == nil {
				t.Fatal("SealInPlace accepted a negative length")
			}
		})
	}
}

// Buffers that alias in ways the AEAD cannot handle give an error, not a panic.
func TestOverlapRejected(t *testing.T) {
	send, recv := keypairs(t, false)
	buf := make([]byte, 200)
	if _, err := send.Seal(buf[:0], buf[4:50]); err == nil {
		t.Error("Seal accepted a plaintext overlapping the header it writes")
	}
	if _, err := send.Seal(buf[:0], buf[20:60]); err == nil {
		t.Error("Seal accepted a plaintext shifted against its ciphertext")
	}
	pkt, err := send.Seal(nil, make([]byte, 64))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recv.Open(pkt[:0], pkt); err == nil {
		t.Error("Open accepted dst overlapping the header")
	}
	if _, err := recv.Open(pkt[DataHeaderLen:DataHeaderLen], pkt); err != nil {
		t.Errorf("exact in-place Open after rejected attempts: %v", err)
	}
}

func TestSealExhausted(t *testing.T) {
	send, recv := keypairs(t, false)
	send.sendCounter.Store(RejectAfterMessages - 1)
	last, err := send.Seal(nil, []byte("last"))
	if err != nil {
		t.Fatalf("Seal of the last counter: %v", err)
	}
	for i := 0; i < 3; i++ {
		if _, err := send.Seal(nil, []byte("x")); !errors.Is(err, ErrKeyExhausted) {
			t.Fatalf("Seal past the limit: %v, want ErrKeyExhausted", err)
		}
	}
	if got := send.SendCount(); got != RejectAfterMessages {
		t.Fatalf("SendCount = %d, want %d", got, uint64(RejectAfterMessages))
	}
	if _, err := recv.Open(nil, last); err != nil {
		t.Fatalf("Open of the last counter: %v", err)
	}
}

func TestConcurrentSealOpen(t *testing.T) {
	send, recv := keypairs(t, false)
	const workers, per = 4, 200
	pkts := make(chan []byte, workers*per)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				p, err := send.Seal(nil, []byte(fmt.Sprint(i)))
				if err != nil {
					t.Error(err)
					return
				}
				pkts <- p
			}
		}()
	}
	wg.Wait()
	close(pkts)
	var opened sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for w := 0; w < workers; w++ {
		opened.Add(1)
		go func() {
			defer opened.Done()
			for p := range pkts {
				if _, err := recv.Open(nil, p); err == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		}()
	}
	opened.Wait()
	if ok != workers*per || send.SendCount() != workers*per {
		t.Fatalf("opened %d of %d packets, SendCount %d", ok, workers*per, send.SendCount())
	}
}

func TestSealOpenAllocationFree(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items on purpose; run without -race")
	}
	for _, c := range cipherChoices {
		t.Run(c.name, func(t *testing.T) {
			send, recv := keypairs(t, c.aes)
			msg := make([]byte, 1400)
			pktBuf := make([]byte, 0, len(msg)+Overhead)
			out := make([]byte, 0, len(msg))
			allocs := testing.AllocsPerRun(100, func() {
				pkt, err := send.Seal(pktBuf, msg)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := recv.Open(out, pkt); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("Seal+Open allocated %.1f times per packet, want 0", allocs)
			}
		})
	}
}

func BenchmarkSeal(b *testing.B) {
	for _, c := range cipherChoices {
		b.Run(c.name, func(b *testing.B) {
			send, _ := keypairs(b, c.aes)
			msg := make([]byte, 1400)
			buf := make([]byte, 0, len(msg)+Overhead)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := send.Seal(buf, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, c := range cipherChoices {
		b.Run(c.name, func(b *testing.B) {
			send, recv := keypairs(b, c.aes)
			msg := make([]byte, 1400)
			// Pre-seal outside the timed loop, in batches so memory stays small.
			const batch = 4096
			pkts := make([][]byte, batch)
			out := make([]byte, 0, len(msg))
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			i := batch
			for b.Loop() {
				if i == batch {
					b.StopTimer()
					for j := range pkts {
						p, err := send.Seal(pkts[j][:0], msg)
						if err != nil {
							b.Fatal(err)
						}
						pkts[j] = p
					}
					i = 0
					b.StartTimer()
				}
				if _, err := recv.Open(out, pkts[i]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
