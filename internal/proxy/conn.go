package proxy

// Conn: one netstack TCP connection, driven directly on its tcpip.Endpoint.
//
//	Read:  endpoint receive queue --ep.Read(SliceWriter)--> caller's buffer (waits for EventIn)
//	Write: caller's buffer --ep.Write(bytes.Reader)--> endpoint send queue --> netstack --> link --> TUN
//	       (waits for EventOut while the send buffer is full: the kernel peer is not reading)
//
// gVisor's errors stay typed here: each tcpip.Error is turned into its syscall errno (or io.EOF) at this
// boundary, so callers test them with errors.Is instead of matching text.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Conn is a netstack TCP connection with half-close and abort. Read and Write errors caused by the
// peer are syscall errors (ECONNRESET, ECONNABORTED, ETIMEDOUT, EPIPE), so errors.Is works on them;
// Read returns io.EOF after the peer's FIN. Read and Write may run concurrently with each other and
// with the other methods.
type Conn struct {
	ep    tcpip.Endpoint
	wq    *waiter.Queue
	entry *flowEntry // the flow's entry in the Stack's table

	mu       sync.Mutex
	closed   bool
	rdlTimer *time.Timer
	rdlCh    chan struct{} // closed when the read deadline passes
	done     chan struct{} // closed by Close and Abort
}

func newConn(wq *waiter.Queue, ep tcpip.Endpoint) *Conn {
	return &Conn{ep: ep, wq: wq, done: make(chan struct{})}
}

// errWait is the internal "try again when the endpoint signals" result.
var errWait = errors.New("would block")

// Read reads available bytes into p, waiting until some arrive. It returns io.EOF after the peer's FIN.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := c.tryRead(p)
		if err != errWait {
			return n, err
		}
		if err := c.wait(waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr, true, c.canRead); err != nil {
			return 0, err
		}
	}
}

// newNotify prepares fn to be called (from netstack, must not block) with the events when the
// connection may have become readable, hung up or failed; register starts the calls, unregister ends
// them. They are separate so that the caller can keep unregister before any call can happen.
func (c *Conn) newNotify(fn func(waiter.EventMask)) (register, unregister func()) {
	e := waiter.NewFunctionEntry(waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr, fn)
	return func() { c.wq.EventRegister(&e) }, func() { c.wq.EventUnregister(&e) }
}

// reset reports whether the connection was reset by its peer or failed (netstack's error state).
// A pump blocked writing this connection's bytes into a stream whose window is shut would not see the
// reset by reading, so the flow asks this on every event.
func (c *Conn) reset() bool {
	return tcp.EndpointState(c.ep.State()) == tcp.StateError
}

func (c *Conn) canRead() bool {
	return c.ep.Readiness(waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr) != 0
}

func (c *Conn) tryRead(p []byte) (int, error) {
	w := tcpip.SliceWriter(p)
	res, terr := c.ep.Read(&w, tcpip.ReadOptions{})
	switch terr.(type) {
	case nil:
		return res.Count, nil
	case *tcpip.ErrWouldBlock:
		return 0, errWait
	case *tcpip.ErrClosedForReceive:
		return 0, io.EOF
	}
	return 0, c.opErr("read", terr)
}

// Write writes all of p, waiting while netstack's send buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	r := bytes.NewReader(p)
	for r.Len() > 0 {
		_, terr := c.ep.Write(r, tcpip.WriteOptions{})
		switch terr.(type) {
		case nil:
			continue
		case *tcpip.ErrWouldBlock:
			if err := c.wait(waiter.WritableEvents|waiter.EventHUp|waiter.EventErr, false, c.canWrite); err != nil {
				return len(p) - r.Len(), err
			}
			continue
		}
		return len(p) - r.Len(), c.opErr("write", terr)
	}
	return len(p), nil
}

func (c *Conn) canWrite() bool {
	return c.ep.Readiness(waiter.WritableEvents|waiter.EventHUp|waiter.EventErr) != 0
}

// wait blocks until ready() holds after an event in mask, the connection is closed, or (for reads)
// the read deadline passes.
func (c *Conn) wait(mask waiter.EventMask, read bool, ready func() bool) error {
	entry, ch := waiter.NewChannelEntry(mask)
	c.wq.EventRegister(&entry)
	defer c.wq.EventUnregister(&entry)
	for !ready() {
		c.mu.Lock()
		closed, dl := c.closed, c.rdlCh
		c.mu.Unlock()
		if closed {
			return net.ErrClosed
		}
		if !read {
			dl = nil
		}
		select {
		case <-ch:
		case <-c.done:
			return net.ErrClosed
		case <-dl:
			return fmt.Errorf("read: %w", errDeadline)
		}
	}
	return nil
}

// errDeadline matches os.ErrDeadlineExceeded semantics for callers that check Timeout().
var errDeadline = &timeoutError{}

type timeoutError struct{}

func (*timeoutError) Error() string   { return "i/o timeout" }
func (*timeoutError) Timeout() bool   { return true }
func (*timeoutError) Temporary() bool { return true }

// SetReadDeadline makes a waiting or later Read fail with a timeout error after t; zero clears it.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rdlTimer != nil {
		c.rdlTimer.Stop()
		c.rdlTimer = nil
	}
	ch := make(chan struct{})
	c.rdlCh = nil
	if t.IsZero() {
		return nil
	}
	c.rdlCh = ch
	if d := time.Until(t); d <= 0 {
		close(ch)
	} else {
		c.rdlTimer = time.AfterFunc(d, func() { close(ch) })
	}
	return nil
}

// CloseWrite sends a FIN and keeps reading.
func (c *Conn) CloseWrite() error {
	if terr := c.ep.Shutdown(tcpip.ShutdownWrite); terr != nil {
		return c.opErr("close write", terr)
	}
	return nil
}

// Abort sends a RST and releases the connection (SO_LINGER 0 and close, as a socket's RST close); the
// peer sees ECONNRESET. Close after Abort is harmless.
func (c *Conn) Abort() {
	c.ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true, Timeout: 0})
	c.Close()
}

// Close releases the connection: netstack finishes sending what was written, then FIN.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.rdlTimer != nil {
		c.rdlTimer.Stop()
	}
	close(c.done)
	c.mu.Unlock()
	c.ep.Close()
	return nil
}

// LocalAddr is the netstack end's address (the client's on the destination node, the server's on the
// source node).
func (c *Conn) LocalAddr() net.Addr { return c.addr(c.ep.GetLocalAddress) }

// RemoteAddr is the kernel end's address.
func (c *Conn) RemoteAddr() net.Addr { return c.addr(c.ep.GetRemoteAddress) }

func (c *Conn) addr(get func() (tcpip.FullAddress, tcpip.Error)) net.Addr {
	a, err := get()
	if err != nil {
		return nil
	}
	return &net.TCPAddr{IP: net.IP(a.Addr.AsSlice()), Port: int(a.Port)}
}

func (c *Conn) opErr(op string, terr tcpip.Error) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "tcp", Err: convertErr(terr)}
}
