package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/weft-vpn/weft/internal/netlab"
	"github.com/weft-vpn/weft/internal/tun"
)

// Addresses of the TUN tests: the namespace's own address on the TUN, a
// remote client netstack impersonates, and a remote subnet routed into the TUN.
var (
	testNode   = netip.MustParsePrefix("10.144.144.1/24")
	testClient = netip.MustParseAddr("10.144.144.2")
	testSubnet = netip.MustParsePrefix("10.9.9.0/24")
)

const testMTU = 1420

// harness is one namespace with a real TUN wired to a Stack the way a node
// wires them: TUN reads go to Inject when Owns says so (or when proxy picks a
// SYN: Claim first), Output goes to TUN writes.
type harness struct {
	dev    tun.Device
	st     *Stack
	proxy  func(FlowID) bool
	strays atomic.Int64 // TCP packets read from the TUN that netstack did not own
	werrs  atomic.Int64 // failed TUN writes
}

// newHarness builds the namespace, TUN and Stack; the test goroutine stays in
// the namespace until the test ends, so sockets it opens live there.
func newHarness(t *testing.T, timeWait time.Duration, forward func(*Request), proxy func(FlowID) bool) *harness {
	t.Helper()
	lab := netlab.New(t)
	enterHost(t, lab.Host("n"))
	dev, err := tun.Create("wt0", testMTU)
	if err != nil {
		t.Fatal(err)
	}
	if err := tun.Configure("wt0", testNode, testMTU); err != nil {
		dev.Close()
		t.Fatal(err)
	}
	h := &harness{dev: dev, proxy: proxy}
	h.st, err = NewStack(StackOptions{
		MTU: testMTU, Forward: forward, TimeWait: timeWait, OutputOffset: tun.Headroom,
		Output: func(pkts [][]byte, off int) {
			if _, err := dev.Write(pkts, off); err != nil {
				h.werrs.Add(1)
			}
		},
	})
	if err != nil {
		dev.Close()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go h.readTUN(&wg)
	t.Cleanup(func() {
		h.st.Close()
		dev.Close()
		wg.Wait()
		if n := h.werrs.Load(); n > 0 {
			t.Errorf("%d TUN writes failed", n)
		}
	})
	return h
}

// readTUN is the node's TUN reader, reduced to the proxy's part.
func (h *harness) readTUN(wg *sync.WaitGroup) {
	defer wg.Done()
	bufs := make([][]byte, h.dev.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, tun.Headroom+tun.MaxPacketSize)
	}
	sizes := make([]int, len(bufs))
	for {
		n, err := h.dev.Read(bufs, sizes, tun.Headroom)
		for i := range n {
			pkt := bufs[i][tun.Headroom : tun.Headroom+sizes[i]]
			k, flags, ok := parseTCP4(pkt)
			switch {
			case !ok:
			case h.st.Owns(pkt):
				h.st.Inject(pkt)
			case flags&(tcpFlagSYN|tcpFlagACK) == tcpFlagSYN && h.proxy != nil && h.proxy(k.id()):
				h.st.Claim(k.id())
				h.st.Inject(pkt)
			default:
				h.strays.Add(1)
			}
		}
		if err != nil && !errors.Is(err, tun.ErrTooManySegments) {
			return
		}
	}
}

// enterHost moves the test goroutine, locked to its thread, into h's
// namespace until the test ends.
func enterHost(t *testing.T, h *netlab.Host) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current netns: %v", err)
	}
	ns, err := netns.GetFromName(h.Netns())
	if err == nil {
		err = netns.Set(ns)
	}
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("enter netns %s: %v", h.Netns(), err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("restore netns: %v", err) // the thread stays locked and dies with the goroutine
		} else {
			runtime.UnlockOSThread()
		}
		ns.Close()
		orig.Close()
	})
}

func addrPort(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// listen opens a kernel listener on the node address; call from the test goroutine.
func listen(t *testing.T, port uint16) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", addrPort(testNode.Addr(), port).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// accept accepts one connection in the background.
func accept(ln net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

func waitConn(t *testing.T, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("kernel accept failed")
		}
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("kernel listener accepted nothing within 10s")
	}
	return nil
}

// transfer writes size pseudo-random bytes to w (then half-closes it) while
// reading r to EOF; it returns the sha256 of what it wrote and what it read.
func transfer(w Conn2, r io.Reader, size int64, seed uint64) (sent, got [32]byte, n int64, err error) {
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		h := sha256.New()
		src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{byte(seed)}), size), h)
		if _, werr = io.CopyBuffer(w, src, make([]byte, 64<<10)); werr == nil {
			werr = w.CloseWrite()
		}
		copy(sent[:], h.Sum(nil))
	}()
	h := sha256.New()
	n, err = io.CopyBuffer(h, r, make([]byte, 64<<10))
	copy(got[:], h.Sum(nil))
	wg.Wait()
	return sent, got, n, errors.Join(err, werr)
}

// Conn2 is what transfer needs of both kernel and netstack connections.
type Conn2 interface {
	io.Writer
	CloseWrite() error
}

func TestStackDialKernelListener(t *testing.T) {
	h := newHarness(t, 300*time.Millisecond, nil, nil)
	ln := listen(t, 25666)
	acc := accept(ln)
	id := FlowID{Src: addrPort(testClient, 40000), Dst: addrPort(testNode.Addr(), 25666)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := h.st.Dial(ctx, id)
	if err != nil {
		t.Fatalf("Dial %s: %v", id, err)
	}
	srv := waitConn(t, acc)
	if got := srv.RemoteAddr().String(); got != id.Src.String() {
		t.Fatalf("kernel server sees peer %s, want the spoofed client %s", got, id.Src)
	}
	if fl := h.st.Flows(); len(fl) != 1 || fl[0].ID != id || fl[0].State != "established" {
		t.Fatalf("Flows() = %+v, want one established %s", fl, id)
	}

	const size = 64 << 20
	start := time.Now()
	type result struct {
		sent, got [32]byte
		n         int64
		err       error
	}
	toKernel := make(chan result, 1)
	go func() {
		s, g, n, err := transfer(c, srv, size, 1) // netstack -> kernel
		toKernel <- result{s, g, n, err}
	}()
	s2, g2, n2, err2 := transfer(srv.(*net.TCPConn), c, size, 2) // kernel -> netstack
	r1 := <-toKernel
	elapsed := time.Since(start)
	for _, r := range []result{r1, {s2, g2, n2, err2}} {
		if r.err != nil || r.n != size || r.sent != r.got {
			t.Fatalf("transfer: %d of %d bytes, hashes equal %v, err %v", r.n, size, r.sent == r.got, r.err)
		}
	}
	t.Logf("spoofed dial into the kernel: 2 x %d MiB in %v = %.0f Mbit/s each way (concurrent)",
		size>>20, elapsed.Round(time.Millisecond), float64(size)*8/elapsed.Seconds()/1e6)
	c.Close()
	srv.Close()
	netlab.Eventually(t, 10*time.Second, func() bool { return len(h.st.Flows()) == 0 },
		"flow table still holds %+v after close and TIME_WAIT", h.st.Flows())
	if h.st.Owns(tcpPacket(id.Dst, id.Src, tcpFlagACK)) {
		t.Fatal("Owns is true for a released flow")
	}
}

func TestStackDialRefusedAndUnanswered(t *testing.T) {
	h := newHarness(t, 0, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	closed := FlowID{Src: addrPort(testClient, 40001), Dst: addrPort(testNode.Addr(), 25667)}
	start := time.Now()
	_, err := h.st.Dial(ctx, closed)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Dial to a closed port: %v, want ECONNREFUSED", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusal took %v, want it prompt", d)
	}
	// 10.144.144.77 is on the TUN's /24 but nobody answers (forwarding off).
	silent := FlowID{Src: addrPort(testClient, 40002), Dst: netip.MustParseAddrPort("10.144.144.77:80")}
	short, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	_, err = h.st.Dial(short, silent)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a silent address: %v, want context.DeadlineExceeded", err)
	}
	netlab.Eventually(t, 5*time.Second, func() bool { return len(h.st.Flows()) == 0 },
		"failed dials still in the table: %+v", h.st.Flows())
}

// echoForward accepts flows to port 80 (echoing), rejects the rest, and
// reports every request's ID.
func echoForward(seen chan<- FlowID) func(*Request) {
	return func(r *Request) {
		seen <- r.ID()
		if r.ID().Dst.Port() != 80 {
			r.Reject()
			return
		}
		c, err := r.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
			c.CloseWrite()
		}()
	}
}

func TestStackForwardAcceptAndReject(t *testing.T) {
	seen := make(chan FlowID, 4)
	h := newHarness(t, 300*time.Millisecond, echoForward(seen),
		func(id FlowID) bool { return testSubnet.Contains(id.Dst.Addr()) })
	if err := tun.AddRoute("wt0", testSubnet, testNode.Addr()); err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IP(testNode.Addr().AsSlice()), Port: 45001}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", "10.9.9.9:80")
	if err != nil {
		t.Fatalf("kernel client dial through netstack: %v", err)
	}
	defer c.Close()
	want := FlowID{Src: addrPort(testNode.Addr(), 45001), Dst: netip.MustParseAddrPort("10.9.9.9:80")}
	if got := <-seen; got != want {
		t.Fatalf("Forward saw %s, want %s", got, want)
	}
	if !h.st.Owns(tcpPacket(want.Src, want.Dst, tcpFlagACK)) {
		t.Fatal("Owns is false for the client->server direction of an accepted flow")
	}
	netlab.Eventually(t, 5*time.Second, func() bool {
		fl := h.st.Flows()
		return len(fl) == 1 && fl[0].ID == want && fl[0].State == "established"
	}, "Flows() = %+v, want one established %s", h.st.Flows(), want)
	const size = 8 << 20
	sent, got, n, err := transfer(c.(*net.TCPConn), c, size, 3)
	if err != nil || n != size || sent != got {
		t.Fatalf("echo through netstack: %d of %d bytes, hashes equal %v, err %v", n, size, sent == got, err)
	}
	c.Close()
	netlab.Eventually(t, 10*time.Second, func() bool { return len(h.st.Flows()) == 0 },
		"flow table still holds %+v", h.st.Flows())

	d.LocalAddr.(*net.TCPAddr).Port = 45002
	_, err = d.Dial("tcp4", "10.9.9.9:81")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("kernel dial of a rejected flow: %v, want ECONNREFUSED", err)
	}
	if got := <-seen; got.Dst.Port() != 81 {
		t.Fatalf("Forward saw %s, want the port 81 flow", got)
	}
	if fl := h.st.Flows(); len(fl) != 0 {
		t.Fatalf("a rejected flow stays in the table: %+v", fl)
	}
	if n := h.strays.Load(); n != 0 {
		t.Fatalf("%d TCP packets of proxied flows were not owned", n)
	}
}

func TestStackHalfCloseAndAbort(t *testing.T) {
	h := newHarness(t, 300*time.Millisecond, nil, nil)
	ln := listen(t, 25668)
	dial := func(port uint16) (*Conn, net.Conn) {
		t.Helper()
		acc := accept(ln)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := h.st.Dial(ctx, FlowID{Src: addrPort(testClient, port), Dst: addrPort(testNode.Addr(), 25668)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, waitConn(t, acc)
	}
	expect := func(r io.Reader, want string) {
		t.Helper()
		got, err := io.ReadAll(r)
		if err != nil || string(got) != want {
			t.Fatalf("read %q, %v; want %q then EOF", got, err, want)
		}
	}
	write := func(w io.Writer, s string) {
		t.Helper()
		if _, err := io.WriteString(w, s); err != nil {
			t.Fatal(err)
		}
	}

	// netstack half-closes first; the kernel side still answers.
	c, srv := dial(41000)
	write(c, "ping")
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expect(srv, "ping")
	write(srv, "pong")
	srv.(*net.TCPConn).CloseWrite()
	expect(c, "pong")

	// the kernel half-closes first; netstack still answers.
	c, srv = dial(41001)
	write(srv, "hello")
	srv.(*net.TCPConn).CloseWrite()
	expect(c, "hello")
	write(c, "world")
	c.CloseWrite()
	expect(srv, "world")

	// netstack aborts: the kernel peer sees ECONNRESET.
	c, srv = dial(41002)
	c.Abort()
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := srv.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("kernel read after Abort: %v, want ECONNRESET", err)
	}

	// the kernel aborts: the netstack Conn sees ECONNRESET.
	c, srv = dial(41003)
	srv.(*net.TCPConn).SetLinger(0)
	srv.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("netstack read after the kernel's RST: %v, want ECONNRESET", err)
	}
	netlab.Eventually(t, 10*time.Second, func() bool { return len(h.st.Flows()) == 0 },
		"flow table still holds %+v", h.st.Flows())
}

func TestStackForwardAbortAndClose(t *testing.T) {
	accepted := make(chan *Conn, 1)
	h := newHarness(t, 0, func(r *Request) {
		c, err := r.Accept()
		if err == nil {
			accepted <- c
		}
	}, func(FlowID) bool { return true })
	if err := tun.AddRoute("wt0", testSubnet, testNode.Addr()); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp4", "10.9.9.9:80", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nc := <-accepted
	nc.Abort()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("kernel client read after Abort: %v, want ECONNRESET", err)
	}

	// Close resets what is still open.
	c2, err := net.DialTimeout("tcp4", "10.9.9.9:80", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	<-accepted
	if err := h.st.Close(); err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("kernel client read after Stack.Close: %v, want ECONNRESET", err)
	}
	if _, err := h.st.Dial(context.Background(), FlowID{Src: addrPort(testClient, 1), Dst: addrPort(testNode.Addr(), 2)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Dial after Close: %v, want ErrClosed", err)
	}
}

// tcpPacket builds a minimal IPv4 TCP header (no payload, checksums zero).
func tcpPacket(src, dst netip.AddrPort, flags byte) []byte {
	p := make([]byte, 40)
	p[0], p[9] = 0x45, protoTCP
	p[2], p[3] = 0, 40
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	p[20], p[21] = byte(src.Port()>>8), byte(src.Port())
	p[22], p[23] = byte(dst.Port()>>8), byte(dst.Port())
	p[32] = 5 << 4
	p[33] = flags
	return p
}

// TestStackDialReusedSourcePort: a client's kernel reuses one source port towards another server while
// netstack still holds the first flow in TIME_WAIT; the second dial must succeed (it failed with
// EADDRINUSE, seen as "destination unreachable", when the bind was exclusive).
func TestStackDialReusedSourcePort(t *testing.T) {
	h := newHarness(t, 0, nil, nil) // the default TIME_WAIT: 15 s, longer than this test
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, port := range []uint16{25670, 25671} {
		ln := listen(t, port)
		acc := accept(ln)
		id := FlowID{Src: addrPort(testClient, 40100), Dst: addrPort(testNode.Addr(), port)}
		c, err := h.st.Dial(ctx, id)
		if err != nil {
			t.Fatalf("dial %d, %s: %v", i+1, id, err)
		}
		srv := waitConn(t, acc)
		c.Close() // netstack closes first: its endpoint goes to TIME_WAIT
		io.Copy(io.Discard, srv)
		srv.Close()
		if i == 0 {
			netlab.Eventually(t, 5*time.Second, func() bool {
				fl := h.st.Flows()
				return len(fl) == 1 && fl[0].State == "time-wait"
			}, "first flow not in TIME_WAIT: %+v", h.st.Flows())
		}
	}
}
