// Command tcpprobe is the end-to-end tests' TCP client and server for what socat and nc cannot do
// precisely: resets on purpose, many concurrent checked flows, and reporting how a connection ended.
//
//	tcpprobe echo-server ADDR            echo every connection back; FIN after the client's FIN
//	tcpprobe rst-server ADDR             read one byte from each connection, then reset it (SO_LINGER 0)
//	tcpprobe hold-server ADDR            accept and hold connections; print "server: <how it ended>" per connection
//	tcpprobe flood ADDR FLOWS BYTES      FLOWS concurrent connections to an echo server, BYTES random bytes
//	                                     each, sha256 of the echo checked; prints "ok"
//	tcpprobe connect ADDR [SRCPORT]      one connect; prints "connected", "refused", "timeout" or the error,
//	                                     and the time it took in ms
//	tcpprobe hold ADDR                   connect, send a byte, then read until the connection ends; prints how
//	                                     it ended ("reset", "eof", error) and after how many ms
//	tcpprobe many ADDR N                 N sequential short connections (1 byte out, 1 byte echoed back)
//	tcpprobe serial-server ADDR          accept every connection at once but serve them one at a time, in
//	                                     accept order: read a 32-byte sha256, then the data to EOF; answer
//	                                     "ok\n" if the data matches it, "bad\n" if not, and close
//	tcpprobe upload ADDR FLOWS BYTES [SECONDS]
//	                                     FLOWS concurrent uploads to a serial-server, BYTES random bytes each
//	                                     after their sha256, then a half-close; prints "ok N flows ..." only
//	                                     if every flow got "ok" back within SECONDS (default 60), else one
//	                                     line per failed flow and how far it got
//	tcpprobe sink-server ADDR            read and discard; one byte back for every 64 KiB received; close
//	                                     at EOF
//	tcpprobe rate ADDR FLOWS BYTES SECONDS
//	                                     FLOWS concurrent uploads to a sink-server, each of BYTES at most and
//	                                     for SECONDS at most; prints "flow i: X Mbit/s (...)" per flow, the
//	                                     rate of the bytes the sink confirmed while all flows were running
//	                                     (until the first one finished or SECONDS passed), "total: X Mbit/s"
//	                                     and "ok"
//	tcpprobe stall-server ADDR           accept connections and never read them; prints "accepted" per one
//	tcpprobe push ADDR [SRCPORT]         connect, print "connected", then write until the connection fails
//
// Client sockets of flood, upload, rate and push use the cubic congestion control (TCP_CONGESTION),
// whatever the machine's default is (bbr on the test machine: see issue 8's note on the 1000-flow test). tcpprobe raises its open-file limit to 65536 for the many-flow modes.
package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 3 {
		fail("usage: tcpprobe MODE ADDR [ARGS]")
	}
	mode, addr := os.Args[1], os.Args[2]
	raiseFileLimit()
	var err error
	switch mode {
	case "echo-server":
		err = serve(addr, echo)
	case "rst-server":
		err = serve(addr, rst)
	case "hold-server":
		err = serve(addr, hold)
	case "flood":
		err = flood(addr, atoi(3), atoi(4))
	case "connect":
		err = connect(addr)
	case "hold":
		err = holdClient(addr)
	case "many":
		err = many(addr, atoi(3))
	case "serial-server":
		err = serialServer(addr)
	case "upload":
		secs := 60
		if len(os.Args) > 5 {
			secs = atoi(5)
		}
		err = upload(addr, atoi(3), atoi(4), time.Duration(secs)*time.Second)
	case "sink-server":
		err = serve(addr, sink)
	case "rate":
		err = rate(addr, atoi(3), atoi(4), time.Duration(atoi(5))*time.Second)
	case "stall-server":
		err = serve(addr, stall)
	case "push":
		err = push(addr)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fail(err.Error())
	}
}

func atoi(i int) int {
	if len(os.Args) <= i {
		fail("missing argument")
	}
	v, err := strconv.Atoi(os.Args[i])
	if err != nil {
		fail(err.Error())
	}
	return v
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "tcpprobe:", msg)
	os.Exit(1)
}

func serve(addr string, handle func(*net.TCPConn)) error {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return err
	}
	fmt.Println("listening")
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go handle(c.(*net.TCPConn))
	}
}

func echo(c *net.TCPConn) {
	defer c.Close()
	io.Copy(c, c)
	c.CloseWrite()
	io.Copy(io.Discard, c)
}

func rst(c *net.TCPConn) {
	var b [1]byte
	c.Read(b[:])
	c.SetLinger(0)
	c.Close()
}

func hold(c *net.TCPConn) {
	defer c.Close()
	_, err := io.Copy(io.Discard, c)
	fmt.Printf("server: %s\n", kind(err))
}

// kind names how a read ended: "eof" for a FIN, "reset" for a RST.
func kind(err error) string {
	switch {
	case err == nil || errors.Is(err, io.EOF):
		return "eof"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.ETIMEDOUT):
		return "timeout"
	}
	return err.Error()
}

func flood(addr string, flows, size int) error {
	var wg sync.WaitGroup
	errs := make(chan error, flows)
	for i := 0; i < flows; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- oneFlow(addr, size)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	fmt.Printf("ok %d flows of %d bytes\n", flows, size)
	return nil
}

func oneFlow(addr string, size int) error {
	c, err := dial(addr, 15*time.Second, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return fmt.Errorf("read echo after %d bytes: %w", n, err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if n != int64(size) || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("echo corrupted: %d bytes back of %d, sha256 mismatch", n, size)
	}
	return nil
}

func connect(addr string) error {
	d := net.Dialer{Timeout: 20 * time.Second}
	if len(os.Args) > 3 {
		d.LocalAddr = &net.TCPAddr{Port: atoi(3)}
	}
	start := time.Now()
	c, err := d.Dial("tcp4", addr)
	ms := time.Since(start).Milliseconds()
	switch {
	case err == nil:
		c.Close()
		fmt.Printf("connected %d\n", ms)
	case errors.Is(err, syscall.ECONNREFUSED):
		fmt.Printf("refused %d\n", ms)
	case errors.Is(err, syscall.ETIMEDOUT) || os.IsTimeout(err):
		fmt.Printf("timeout %d\n", ms)
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		fmt.Printf("unreachable %d\n", ms)
	default:
		fmt.Printf("error %d %v\n", ms, err)
	}
	return nil
}

func holdClient(addr string) error {
	c, err := net.DialTimeout("tcp4", addr, 15*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Println("connected")
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	start := time.Now()
	_, err = io.Copy(io.Discard, c)
	fmt.Printf("client: %s %d\n", kind(err), time.Since(start).Milliseconds())
	return nil
}

func many(addr string, n int) error {
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp4", addr, 10*time.Second)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		if _, err := c.Write([]byte{7}); err != nil {
			return fmt.Errorf("connection %d: write: %w", i, err)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 7 {
			return fmt.Errorf("connection %d: echo: %v", i, err)
		}
		c.Close()
	}
	fmt.Printf("ok %d connections\n", n)
	return nil
}

// raiseFileLimit lifts RLIMIT_NOFILE to 65536 where allowed, else to the hard limit, so that a thousand
// concurrent flows, and their server, never hit it.
func raiseFileLimit() {
	const want = 65536
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil || l.Cur >= want {
		return
	}
	raised := l
	raised.Cur, raised.Max = want, max(l.Max, want)
	if unix.Setrlimit(unix.RLIMIT_NOFILE, &raised) == nil {
		return
	}
	// Without CAP_SYS_RESOURCE the hard limit stays: take all of it (Go's runtime already does).
	l.Cur = l.Max
	unix.Setrlimit(unix.RLIMIT_NOFILE, &l)
}

// congestionControl is the TCP congestion control of every client socket of upload, rate and push.
const congestionControl = "cubic"

// dial connects to addr with the congestion control set to congestionControl before the SYN.
func dial(addr string, timeout time.Duration, srcPort int) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: timeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, congestionControl)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("setsockopt TCP_CONGESTION %s: %w", congestionControl, serr)
		}
		return nil
	}}
	if srcPort != 0 {
		d.LocalAddr = &net.TCPAddr{Port: srcPort}
	}
	c, err := d.Dial("tcp4", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// congestionOf reads back the congestion control of a connected socket.
func congestionOf(c *net.TCPConn) string {
	rc, err := c.SyscallConn()
	if err != nil {
		return err.Error()
	}
	var name string
	var gerr error
	rc.Control(func(fd uintptr) { name, gerr = unix.GetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION) })
	if gerr != nil {
		return gerr.Error()
	}
	return name
}

// serialServer accepts every connection as soon as it arrives but serves one at a time, in accept
// order: the next connection is read only once the previous one has been read to EOF and answered.
func serialServer(addr string) error {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return err
	}
	fmt.Println("listening")
	conns := make(chan *net.TCPConn, 1<<16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				fmt.Println("accept:", err)
				close(conns)
				return
			}
			conns <- c.(*net.TCPConn)
		}
	}()
	n := 0
	for c := range conns {
		n++
		start := time.Now()
		verdict, detail := checkUpload(c)
		_, werr := c.Write([]byte(verdict + "\n"))
		c.Close()
		if werr != nil {
			detail += fmt.Sprintf("; verdict not sent: %v", werr)
		}
		fmt.Printf("conn %d from %s: %s, %s, read in %d ms\n", n, c.RemoteAddr(), verdict, detail, time.Since(start).Milliseconds())
	}
	return nil
}

// checkUpload reads a 32-byte sha256 and then data to EOF, and returns "ok" if they match.
func checkUpload(c *net.TCPConn) (verdict, detail string) {
	var want [sha256.Size]byte
	if _, err := io.ReadFull(c, want[:]); err != nil {
		return "bad", fmt.Sprintf("header: %v", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return "bad", fmt.Sprintf("read after %d bytes: %v", n, err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return "bad", fmt.Sprintf("%d bytes, sha256 mismatch", n)
	}
	return "ok", fmt.Sprintf("%d bytes", n)
}

// uploadResult is how far one upload flow got.
type uploadResult struct {
	sent    int
	verdict string
	err     error
	took    time.Duration
}

func upload(addr string, flows, size int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	results := make([]uploadResult, flows)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			results[i] = uploadOne(addr, size, deadline)
			results[i].took = time.Since(start)
		}()
	}
	wg.Wait()
	failed := 0
	for i, r := range results {
		if r.err == nil && r.verdict == "ok" {
			continue
		}
		failed++
		fmt.Printf("flow %d: FAILED after %d ms, %d of %d bytes sent, verdict %q, error: %v\n",
			i, r.took.Milliseconds(), r.sent, size+sha256.Size, r.verdict, r.err)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d flows failed (no \"ok\" within %v)", failed, flows, timeout)
	}
	fmt.Printf("ok %d flows of %d bytes, congestion control %s\n", flows, size, congestionControl)
	return nil
}

func uploadOne(addr string, size int, deadline time.Time) uploadResult {
	c, err := dial(addr, time.Until(deadline), 0)
	if err != nil {
		return uploadResult{err: fmt.Errorf("dial: %w", err)}
	}
	defer c.Close()
	c.SetDeadline(deadline)
	buf := make([]byte, sha256.Size+size)
	rand.Read(buf[sha256.Size:])
	sum := sha256.Sum256(buf[sha256.Size:])
	copy(buf, sum[:])
	n, err := c.Write(buf)
	if err != nil {
		return uploadResult{sent: n, err: fmt.Errorf("write: %w", err)}
	}
	if err := c.CloseWrite(); err != nil {
		return uploadResult{sent: n, err: fmt.Errorf("half-close: %w", err)}
	}
	answer, err := io.ReadAll(io.LimitReader(c, 64))
	r := uploadResult{sent: n, verdict: string(bytes.TrimSpace(answer))}
	if err != nil {
		r.err = fmt.Errorf("read verdict: %w", err)
	}
	return r
}

// sinkAck is how many bytes the sink confirms with each byte it sends back.
const sinkAck = 64 << 10

func sink(c *net.TCPConn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	var total, acked int64
	for {
		n, err := c.Read(buf)
		total += int64(n)
		for ; acked < total/sinkAck; acked++ {
			if _, werr := c.Write([]byte{1}); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// rateFlow is one flow of rate: the bytes its sink confirmed, and how it ended.
type rateFlow struct {
	c     *net.TCPConn
	acks  atomic.Int64
	err   atomic.Value // error, the first one before the measurement ended
	ended chan struct{}
}

func rate(addr string, flows, size int, limit time.Duration) error {
	fs := make([]*rateFlow, flows)
	for i := range fs {
		c, err := dial(addr, 15*time.Second, 0)
		if err != nil {
			return fmt.Errorf("flow %d: dial: %w", i, err)
		}
		defer c.Close()
		fs[i] = &rateFlow{c: c, ended: make(chan struct{})}
	}
	fmt.Printf("congestion control: %s\n", congestionOf(fs[0].c))
	var measured atomic.Bool
	first := make(chan struct{})
	var firstOnce sync.Once
	start := time.Now()
	stop := start.Add(limit)
	for _, f := range fs {
		f.c.SetWriteDeadline(stop)
		go func() { // writer
			buf := make([]byte, 64<<10)
			rand.Read(buf)
			for sent := 0; sent < size; {
				n, err := f.c.Write(buf[:min(len(buf), size-sent)])
				sent += n
				if err != nil {
					if !os.IsTimeout(err) && !measured.Load() {
						f.err.CompareAndSwap(nil, fmt.Errorf("write after %d bytes: %w", sent, err))
					}
					return
				}
			}
			f.c.CloseWrite()
		}()
		go func() { // reader of the sink's confirmations
			defer close(f.ended)
			buf := make([]byte, 4096)
			for {
				n, err := f.c.Read(buf)
				f.acks.Add(int64(n))
				if err == nil {
					continue
				}
				switch {
				case measured.Load():
				case errors.Is(err, io.EOF) && f.acks.Load() == int64(size/sinkAck):
					firstOnce.Do(func() { close(first) })
				default:
					f.err.CompareAndSwap(nil, fmt.Errorf("read after %d confirmations: %w", f.acks.Load(), err))
				}
				return
			}
		}()
	}
	timer := time.NewTimer(limit)
	select {
	case <-first:
	case <-timer.C:
	}
	measured.Store(true)
	window := time.Since(start)
	confirmed := make([]int64, flows)
	for i, f := range fs {
		confirmed[i] = f.acks.Load() * sinkAck
	}
	for _, f := range fs {
		f.c.SetLinger(0)
		f.c.Close()
		<-f.ended
	}
	var total int64
	var failed []string
	for i, f := range fs {
		total += confirmed[i]
		fmt.Printf("flow %d: %.1f Mbit/s (%d bytes confirmed in %.2f s)\n", i, mbits(confirmed[i], window), confirmed[i], window.Seconds())
		if err, _ := f.err.Load().(error); err != nil {
			failed = append(failed, fmt.Sprintf("flow %d: %v", i, err))
		}
	}
	sort.Strings(failed)
	fmt.Printf("total: %.1f Mbit/s\n", mbits(total, window))
	if len(failed) > 0 {
		return fmt.Errorf("%d flows failed: %v", len(failed), failed)
	}
	fmt.Println("ok")
	return nil
}

func mbits(n int64, d time.Duration) float64 { return float64(n) * 8 / d.Seconds() / 1e6 }

// stall holds a connection open without ever reading it.
func stall(c *net.TCPConn) {
	fmt.Printf("accepted %s\n", c.RemoteAddr())
	<-make(chan struct{})
	runtime.KeepAlive(c) // keep the connection from being collected and closed
}

func push(addr string) error {
	srcPort := 0
	if len(os.Args) > 3 {
		srcPort = atoi(3)
	}
	c, err := dial(addr, 15*time.Second, srcPort)
	if err != nil {
		return err
	}
	defer c.Close()
	// Linger 0: when the process is killed, its connection is reset at once instead of living on as
	// an orphan that keeps probing the closed window of a server that never reads.
	if err := c.SetLinger(0); err != nil {
		return err
	}
	fmt.Printf("connected, congestion control %s\n", congestionOf(c))
	buf := make([]byte, 64<<10)
	var total int64
	for {
		n, err := c.Write(buf)
		total += int64(n)
		if err != nil {
			return fmt.Errorf("write after %d bytes: %w", total, err)
		}
	}
}
