// Command delay is the benchmark's userspace "wire": run inside a namespace that holds two interfaces
// (no addresses, kernel forwarding off), it copies every Ethernet frame that arrives on one interface
// out of the other after holding it for a fixed delay, in both directions. It replaces netem, which
// this kernel lacks.
//
// How a frame moves: a reader goroutine per direction receives frames from an AF_PACKET socket bound
// to the ingress interface into the next free slot of a fixed ring (no allocation per frame) and stamps
// it with its release time (arrival + delay). A writer goroutine per direction sleeps until the release
// time of the oldest frame, then sends every frame that is due, in arrival order, on the egress
// interface's AF_PACKET socket. When the ring is full the frame is dropped, like a full router queue.
// Offloads (GRO/GSO/TSO) must be off on the interfaces, so that every frame fits the MTU.
//
// Usage: delay -a IFACE -b IFACE -delay 10ms. It runs until SIGINT or SIGTERM (or -timeout, 2h) and
// then prints how many frames it forwarded and dropped.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// slotSize holds a 1500-byte MTU frame with its Ethernet header and some slack.
	slotSize = 2048
	// ringSlots bounds the frames held per direction: 10 ms at 10 Gbit/s of 1514-byte frames.
	ringSlots = 8192
	// packetIgnoreOutgoing is PACKET_IGNORE_OUTGOING (linux/if_packet.h): do not see our own sends.
	packetIgnoreOutgoing = 23
	// ethPAll is ETH_P_ALL in network byte order, as AF_PACKET wants it.
	ethPAll = 0x0300
	// earlySlack releases frames due within this much of now: Go's timers wake up to about 1 ms late
	// (the poller sleeps in whole milliseconds), so this centres the error on the requested delay.
	earlySlack = 500 * time.Microsecond
)

func main() {
	a := flag.String("a", "", "first interface")
	b := flag.String("b", "", "second interface")
	delay := flag.Duration("delay", 10*time.Millisecond, "one-way delay added to every frame")
	limit := flag.Duration("timeout", 2*time.Hour, "exit after this long even if never signalled")
	flag.Parse()
	if *a == "" || *b == "" || *delay < 0 {
		fmt.Fprintln(os.Stderr, "usage: delay -a IFACE -b IFACE [-delay 10ms]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *limit)
	defer cancel()
	if err := run(ctx, *a, *b, *delay); err != nil {
		fmt.Fprintln(os.Stderr, "delay:", err)
		os.Exit(1)
	}
}

// run bridges interfaces a and b with the given delay until ctx ends.
func run(ctx context.Context, a, b string, delay time.Duration) error {
	fa, err := openPacket(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := openPacket(b)
	if err != nil {
		return err
	}
	defer fb.Close()

	dirs := []*direction{newDirection(a+">"+b, fa, fb, delay), newDirection(b+">"+a, fb, fa, delay)}
	var wg sync.WaitGroup
	errc := make(chan error, 2*len(dirs))
	for _, d := range dirs {
		wg.Add(2)
		go func() { defer wg.Done(); errc <- d.read(ctx) }()
		go func() { defer wg.Done(); errc <- d.write(ctx) }()
	}
	fmt.Fprintf(os.Stderr, "delay: bridging %s and %s with %v each way\n", a, b, delay)
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	// Closing the sockets ends the blocked reads (the files are in Go's poller).
	for _, d := range dirs {
		d.stop.Store(true)
	}
	fa.Close()
	fb.Close()
	wg.Wait()
	for _, d := range dirs {
		fmt.Fprintf(os.Stderr, "delay: %s forwarded %d frames, dropped %d (queue full), %d (send failed)\n",
			d.name, d.sent.Load(), d.dropped.Load(), d.sendError.Load())
	}
	return first
}

// openPacket returns an AF_PACKET socket bound to iface that sees every frame arriving on it (not the
// ones sent from it). The socket is non-blocking and wrapped in an os.File, so that reads and writes
// park the goroutine in Go's poller instead of holding an OS thread (a blocking read would keep the
// scheduler from running the writers on time).
func openPacket(iface string) (*os.File, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, ethPAll)
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket (needs root): %w", err)
	}
	opts := []struct {
		level, name, value int
	}{
		{syscall.SOL_PACKET, packetIgnoreOutgoing, 1},
		{syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8 << 20},
		{syscall.SOL_SOCKET, syscall.SO_SNDBUF, 8 << 20},
	}
	for _, o := range opts {
		if err := syscall.SetsockoptInt(fd, o.level, o.name, o.value); err != nil {
			syscall.Close(fd)
			return nil, fmt.Errorf("setsockopt %d on %s: %w", o.name, iface, err)
		}
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: ethPAll, Ifindex: ifi.Index}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("bind to %s: %w", iface, err)
	}
	return os.NewFile(uintptr(fd), "packet:"+iface), nil
}

// direction is one way through the wire: a ring of frames between a reader and a writer. The reader
// owns tail, the writer owns head; each publishes its index atomically.
type direction struct {
	name      string
	in, out   *os.File
	delay     time.Duration
	buf       []byte
	lens      [ringSlots]int
	due       [ringSlots]int64 // release time in monotonic nanoseconds since start
	start     time.Time
	head      atomic.Uint64 // next slot to send
	tail      atomic.Uint64 // next slot to fill
	wake      chan struct{} // signalled when the reader fills an empty ring
	stop      atomic.Bool
	sent      atomic.Uint64
	dropped   atomic.Uint64
	sendError atomic.Uint64
}

func newDirection(name string, in, out *os.File, delay time.Duration) *direction {
	return &direction{name: name, in: in, out: out, delay: delay, buf: make([]byte, ringSlots*slotSize),
		start: time.Now(), wake: make(chan struct{}, 1)}
}

func (d *direction) slot(i uint64) []byte {
	off := int(i%ringSlots) * slotSize
	return d.buf[off : off+slotSize]
}

// read receives frames into the ring until stopped.
func (d *direction) read(ctx context.Context) error {
	var spare [slotSize]byte
	for !d.stop.Load() && ctx.Err() == nil {
		tail := d.tail.Load()
		full := tail-d.head.Load() >= ringSlots
		dst := spare[:]
		if !full {
			dst = d.slot(tail)
		}
		n, err := d.in.Read(dst)
		if err != nil {
			if d.stop.Load() || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("%s: receive: %w", d.name, err)
		}
		if full {
			d.dropped.Add(1)
			continue
		}
		i := tail % ringSlots
		d.lens[i] = n
		d.due[i] = int64(time.Since(d.start) + d.delay)
		d.tail.Store(tail + 1)
		if tail == d.head.Load() {
			select {
			case d.wake <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// write sends every due frame in order, sleeping until the next one is due.
func (d *direction) write(ctx context.Context) error {
	idle := time.NewTimer(time.Hour)
	defer idle.Stop()
	for !d.stop.Load() && ctx.Err() == nil {
		head, tail := d.head.Load(), d.tail.Load()
		if head == tail {
			idle.Reset(100 * time.Millisecond)
			select {
			case <-d.wake:
			case <-idle.C:
			case <-ctx.Done():
			}
			continue
		}
		now := int64(time.Since(d.start) + earlySlack)
		for ; head != tail; head++ {
			i := head % ringSlots
			if d.due[i] > now {
				break
			}
			if _, err := d.out.Write(d.slot(head)[:d.lens[i]]); err != nil {
				// A full egress queue (ENOBUFS) loses the frame, as a real link would.
				d.sendError.Add(1)
			} else {
				d.sent.Add(1)
			}
			d.head.Store(head + 1)
		}
		if head != tail {
			if wait := time.Duration(d.due[head%ringSlots]-int64(time.Since(d.start))) - earlySlack; wait > 0 {
				time.Sleep(wait)
			}
		}
	}
	return nil
}
