package tun

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"
)

// readBufs returns n buffers that satisfy the Read rules.
func readBufs(n int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+MaxPacketSize)
	}
	return bufs, make([]int, n)
}

// writeBuf returns pkt behind Headroom bytes of 0xAA.
func writeBuf(pkt []byte) []byte {
	b := bytes.Repeat([]byte{0xAA}, Headroom)
	return append(b, pkt...)
}

func TestFakeReadBatches(t *testing.T) {
	f := NewFake("fake0", 1400, 3)
	defer f.Close()
	if f.Name() != "fake0" || f.MTU() != 1400 || f.BatchSize() != 3 {
		t.Fatalf("Name/MTU/BatchSize = %q/%d/%d, want fake0/1400/3", f.Name(), f.MTU(), f.BatchSize())
	}
	src := []byte{1, 2, 3}
	for i := range 5 {
		src[0] = byte(i)
		f.Inject(src) // must be copied: src changes on the next round
	}
	bufs, sizes := readBufs(4)
	for _, want := range []int{3, 2} {
		n, err := f.Read(bufs, sizes, Headroom)
		if err != nil || n != want {
			t.Fatalf("Read = %d, %v; want %d, nil", n, err, want)
		}
	}
	// Second read returned packets 3 and 4.
	for i, wantFirst := range []byte{3, 4} {
		got := bufs[i][Headroom : Headroom+sizes[i]]
		if !bytes.Equal(got, []byte{wantFirst, 2, 3}) {
			t.Errorf("packet %d = %v, want [%d 2 3]", i, got, wantFirst)
		}
	}
}

func TestFakeReadBlocksUntilInject(t *testing.T) {
	f := NewFake("fake0", 1400, 8)
	defer f.Close()
	got := make(chan int, 1)
	go func() {
		bufs, sizes := readBufs(8)
		n, _ := f.Read(bufs, sizes, Headroom)
		got <- n
	}()
	select {
	case n := <-got:
		t.Fatalf("Read returned %d before anything was injected", n)
	case <-time.After(50 * time.Millisecond):
	}
	f.Inject([]byte{0x45})
	select {
	case n := <-got:
		if n != 1 {
			t.Fatalf("Read = %d packets, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after Inject")
	}
}

func TestFakeCloseUnblocksRead(t *testing.T) {
	f := NewFake("fake0", 1400, 8)
	errc := make(chan error, 1)
	go func() {
		bufs, sizes := readBufs(1)
		_, err := f.Read(bufs, sizes, Headroom)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := f.Write([][]byte{writeBuf([]byte{1})}, Headroom); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v, want os.ErrClosed", err)
	}
}

func TestFakeWriteCopiesAndClobbersHeadroom(t *testing.T) {
	f := NewFake("fake0", 1400, 8)
	defer f.Close()
	a, b := writeBuf([]byte{1, 2}), writeBuf([]byte{3})
	n, err := f.Write([][]byte{a, b}, Headroom)
	if err != nil || n != 2 {
		t.Fatalf("Write = %d, %v; want 2, nil", n, err)
	}
	a[Headroom] = 99 // the Fake must have copied
	for _, want := range [][]byte{{1, 2}, {3}} {
		select {
		case got := <-f.Written():
			if !bytes.Equal(got, want) {
				t.Errorf("written %v, want %v", got, want)
			}
		default:
			t.Fatalf("packet %v not on Written", want)
		}
	}
	if !bytes.Equal(b[:Headroom], make([]byte, Headroom)) {
		t.Errorf("headroom after Write = %x, want it overwritten like the real device does", b[:Headroom])
	}
}

func TestBufferRules(t *testing.T) {
	f := NewFake("fake0", 1400, 8)
	defer f.Close()
	f.Inject([]byte{1})
	good, sizes := readBufs(2)
	short := [][]byte{make([]byte, Headroom+1500)}
	tests := []struct {
		name string
		call func() error
	}{
		{"read offset below headroom", func() error { _, err := f.Read(good, sizes, Headroom-1); return err }},
		{"read too few sizes", func() error { _, err := f.Read(good, sizes[:1], Headroom); return err }},
		{"read short buffer", func() error { _, err := f.Read(short, sizes, Headroom); return err }},
		{"read no buffers", func() error { _, err := f.Read(nil, sizes, Headroom); return err }},
		{"write offset below headroom", func() error { _, err := f.Write([][]byte{writeBuf([]byte{1})}, 4); return err }},
		{"write empty packet", func() error { _, err := f.Write([][]byte{writeBuf(nil)}, Headroom); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil {
				t.Fatal("got nil error, want a buffer-rule error")
			}
		})
	}
	select {
	case pkt := <-f.Written():
		t.Fatalf("a rejected Write still wrote %v", pkt)
	default:
	}
}
