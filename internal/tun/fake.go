package tun

import (
	"fmt"
	"os"
	"sync"
)

// fakeWrittenQueue is the capacity of a Fake's Written channel; Write blocks
// while it is full.
const fakeWrittenQueue = 1024

// Fake is an in-memory Device: Inject queues packets the "kernel" sends
// (returned by Read, batched up to batch), Written returns a channel of
// packets written to it (copies). Close unblocks Read with an error.
//
// Fake enforces the same buffer rules as the Linux device (offset at least
// Headroom, Read buffers of offset+MaxPacketSize bytes, len(sizes) >=
// len(bufs)) and, like it, overwrites the headroom of buffers passed to Write,
// so contract violations show up in unit tests rather than on a real TUN. It
// never coalesces or splits packets.
type Fake struct {
	name  string
	mtu   int
	batch int

	mu      sync.Mutex
	queue   [][]byte      // injected packets not yet read
	ready   chan struct{} // holds a token while queue may be non-empty
	written chan []byte
	closed  chan struct{}
	once    sync.Once
}

var _ Device = (*Fake)(nil)

// NewFake returns a Fake named name with the MTU that returns at most batch
// packets per Read (a batch below 1 counts as 1).
func NewFake(name string, mtu, batch int) *Fake {
	return &Fake{
		name:    name,
		mtu:     mtu,
		batch:   max(batch, 1),
		ready:   make(chan struct{}, 1),
		written: make(chan []byte, fakeWrittenQueue),
		closed:  make(chan struct{}),
	}
}

// Inject queues a copy of pkt as if the kernel had sent it into the device.
// Packets injected after Close are dropped.
func (f *Fake) Inject(pkt []byte) {
	select {
	case <-f.closed:
		return
	default:
	}
	f.mu.Lock()
	f.queue = append(f.queue, append([]byte(nil), pkt...))
	f.mu.Unlock()
	f.signal()
}

// Written returns the channel that receives a copy of every packet written to
// the device, in order. It holds 1024 packets; Write blocks while it is full.
// It is never closed.
func (f *Fake) Written() <-chan []byte { return f.written }

// Read implements Device: it blocks until a packet was injected or the Fake is
// closed, then returns up to min(batch, len(bufs)) queued packets.
func (f *Fake) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if err := checkReadBufs(bufs, sizes, offset); err != nil {
		return 0, err
	}
	for {
		select {
		case <-f.closed:
			return 0, fmt.Errorf("read fake TUN %s: %w", f.name, os.ErrClosed)
		default:
		}
		if n := f.take(bufs, sizes, offset); n > 0 {
			return n, nil
		}
		select {
		case <-f.ready:
		case <-f.closed:
		}
	}
}

// take moves up to min(batch, len(bufs)) queued packets into bufs.
func (f *Fake) take(bufs [][]byte, sizes []int, offset int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := min(len(f.queue), len(bufs), f.batch)
	for i := range n {
		sizes[i] = copy(bufs[i][offset:], f.queue[i])
		f.queue[i] = nil
	}
	f.queue = f.queue[n:]
	if len(f.queue) > 0 {
		f.signal()
	}
	return n
}

// signal leaves a token for a Read waiting for packets.
func (f *Fake) signal() {
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

// Write implements Device: it sends a copy of each bufs[i][offset:] to the
// Written channel and returns len(bufs), or fails with os.ErrClosed once the
// Fake is closed.
func (f *Fake) Write(bufs [][]byte, offset int) (int, error) {
	if err := checkWriteBufs(bufs, offset); err != nil {
		return 0, err
	}
	for _, b := range bufs {
		select {
		case <-f.closed:
			return 0, fmt.Errorf("write fake TUN %s: %w", f.name, os.ErrClosed)
		default:
		}
		pkt := append([]byte(nil), b[offset:]...)
		clear(b[offset-Headroom : offset]) // the real device writes a header here
		select {
		case f.written <- pkt:
		case <-f.closed:
			return 0, fmt.Errorf("write fake TUN %s: %w", f.name, os.ErrClosed)
		}
	}
	return len(bufs), nil
}

// BatchSize implements Device.
func (f *Fake) BatchSize() int { return f.batch }

// Name implements Device.
func (f *Fake) Name() string { return f.name }

// MTU implements Device.
func (f *Fake) MTU() int { return f.mtu }

// Close implements Device; it unblocks pending Reads and Writes. Closing
// twice is harmless.
func (f *Fake) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}
