package proxy

// A proxied flow in motion: two pumps, one per direction, each moving bytes from one end of the flow
// (the netstack connection or the stream) to the other. A pump runs on a goroutine only while its
// source has something to read, so an idle flow holds no goroutine and no buffer, only the state of
// its two ends.
//
//	source readable (netstack waiter callback, or the stream's notify) -> kick: start the pump's
//	goroutine unless it runs; a reset from either end (the kernel peer's RST, the peer node's reset)
//	fails the flow at once
//	pump: borrow a 64 KiB buffer -> tryRead -> Write to the other end (this may wait: the peer's
//	      window or netstack's send buffer is full) -> ... until tryRead would block -> give the buffer
//	      back and end; a kick that came meanwhile makes it go round again, so none is lost
//	EOF: CloseWrite on the other end; both directions at EOF: Close both (graceful)
//	an error on either: reset both ends; the flow ends when both pumps have stopped

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/weft-vpn/weft/internal/session"
)

// flowEnd is either end of a proxied flow: a netstack connection or a stream.
type flowEnd interface {
	tryRead(p []byte) (int, error) // errWait when nothing can be read now
	Write(p []byte) (int, error)
	CloseWrite() error
	Close() error
}

// flow is one proxied flow between a netstack connection and a stream.
type flow struct {
	p      *Proxy
	id     FlowID
	side   string
	rec    *Flow
	entry  *flowEntry
	conn   *Conn
	st     *Stream
	up     pump // client -> server
	down   pump // server -> client
	unreg  func()
	left   atomic.Int32 // pumps not yet stopped
	failed atomic.Bool
	ended  atomic.Bool // both pumps stopped; a late fail changes nothing
	once   sync.Once
}

// pump moves the bytes of one direction.
type pump struct {
	f        *flow
	src, dst flowEnd
	count    *atomic.Uint64
	state    atomic.Int32 // pumpIdle, pumpRunning or pumpPending
	stopped  atomic.Bool
}

// startFlow starts moving bytes between conn and st and returns at once. client and server say which
// end is which (the netstack connection is the client's end on the source node, the server's on the
// destination node).
func (p *Proxy) startFlow(id FlowID, side string, peer session.NodeID, conn *Conn, st *Stream, connIsClient bool) {
	f := &flow{p: p, id: id, side: side, conn: conn, st: st, entry: conn.entry,
		rec: &Flow{ID: id, Side: side, Peer: peer, Start: time.Now()}}
	f.rec.state.Store("established")
	p.opened.Add(1)
	if f.entry != nil {
		f.entry.rec.Store(f.rec)
	}
	var cl, sv flowEnd = conn, st
	if !connIsClient {
		cl, sv = st, conn
	}
	f.up = pump{f: f, src: cl, dst: sv, count: &f.rec.Up}
	f.down = pump{f: f, src: sv, dst: cl, count: &f.rec.Down}
	connPump, stPump := &f.up, &f.down
	if !connIsClient {
		connPump, stPump = &f.down, &f.up
	}
	f.left.Store(2)
	p.wg.Add(1)
	// A reset fails the flow at once, from either end: the pump reading the reset end may be blocked
	// writing into the other (a stream whose window the far service keeps shut, or a netstack
	// connection whose kernel peer stopped reading) and would not see the reset by reading. Failing
	// aborts the stream and the connection, which unblocks both pumps.
	register, unreg := conn.newNotify(func(waiter.EventMask) {
		if conn.reset() {
			go f.fail("reset", syscall.ECONNRESET)
		}
		connPump.kick()
	})
	f.unreg = unreg
	register()
	st.setNotify(func(reset bool) {
		if reset {
			go f.fail("peer reset", ErrReset)
		}
		stPump.kick()
	})
	connPump.kick()
	stPump.kick()
}

// Pump states: idle (no goroutine), running, or running with a kick that came while it ran (it looks
// at its source once more before it ends). A stopped pump stays running or pending for good, so no
// goroutine starts for it again.
const (
	pumpIdle int32 = iota
	pumpRunning
	pumpPending
)

// kick makes the pump look at its source: it starts the pump's goroutine unless it runs or stopped.
func (d *pump) kick() {
	if d.stopped.Load() {
		return
	}
	for {
		switch d.state.Load() {
		case pumpIdle:
			if d.state.CompareAndSwap(pumpIdle, pumpRunning) {
				go d.run()
				return
			}
		case pumpRunning:
			if d.state.CompareAndSwap(pumpRunning, pumpPending) {
				return
			}
		default: // pending already
			return
		}
	}
}

// run copies until the source would block, then ends unless kicked meanwhile.
func (d *pump) run() {
	for {
		d.state.Store(pumpRunning)
		if !d.drain() {
			d.stopped.Store(true)
			d.f.pumpStopped()
			return
		}
		if d.state.CompareAndSwap(pumpRunning, pumpIdle) {
			return
		}
	}
}

// drain copies what the source has; false once the direction is over (EOF passed on, or an error).
func (d *pump) drain() bool {
	f := d.f
	var bp *[]byte
	defer func() {
		if bp != nil {
			f.p.bufs.Put(bp)
		}
	}()
	for {
		if f.failed.Load() {
			return false
		}
		if bp == nil {
			bp = f.p.bufs.Get().(*[]byte)
		}
		k, err := d.src.tryRead(*bp)
		if k > 0 {
			if _, werr := d.dst.Write((*bp)[:k]); werr != nil {
				f.fail("write", werr)
				return false
			}
			d.count.Add(uint64(k))
		}
		switch {
		case err == nil:
		case err == errWait:
			return true
		case errors.Is(err, io.EOF):
			if f.left.Load() == 2 {
				f.rec.state.Store("half-closed")
			}
			if werr := d.dst.CloseWrite(); werr != nil {
				f.fail("close write", werr)
			}
			return false
		default:
			f.fail("read", err)
			return false
		}
	}
}

// fail resets both ends of the flow (once) and wakes both pumps so that they stop.
func (f *flow) fail(why string, err error) {
	if f.ended.Load() || !f.failed.CompareAndSwap(false, true) {
		return
	}
	f.p.log.Debug("proxied flow reset", "flow", f.id.String(), "side", f.side, "where", why, "err", err)
	f.p.reset.Add(1)
	f.rec.state.Store("closing")
	f.conn.Abort()
	f.st.Reset()
	f.up.kick()
	f.down.kick()
}

// pumpStopped ends the flow when both pumps have stopped: both ends are closed (gracefully, unless the
// flow failed) and the flow leaves the list.
func (f *flow) pumpStopped() {
	if f.left.Add(-1) != 0 {
		return
	}
	f.once.Do(func() {
		f.ended.Store(true)
		f.unreg()
		f.st.setNotify(nil)
		if !f.failed.Load() {
			f.rec.state.Store("closing")
			f.conn.Close()
			f.st.Close()
		}
		if f.entry != nil {
			f.entry.rec.Store(nil)
		}
		f.p.wg.Done()
	})
}
