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
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fail("usage: tcpprobe MODE ADDR [ARGS]")
	}
	mode, addr := os.Args[1], os.Args[2]
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
	c, err := net.DialTimeout("tcp4", addr, 15*time.Second)
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
			err = c.(*net.TCPConn).CloseWrite()
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
