// Command rrtest measures TCP latency for the benchmark, run inside its namespaces:
//
//	rrtest serve   -listen :7000            echo every message back, on every connection, until killed
//	rrtest rr      -addr H:7000 -n 200      one connection, n round trips of -size bytes (TCP_NODELAY)
//	rrtest connect -addr H:7000 -n 200      n connections, timing connect() of each
//	rrtest hold    -addr H:7000 -n 1000     open n idle connections, print "ready", hold until killed
//
// rr and connect print one JSON object {"samples_us": [...]} on stdout. Every mode is bounded by
// -timeout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rrtest serve|rr|connect|hold [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	listen := fs.String("listen", ":7000", "serve: address to listen on")
	addr := fs.String("addr", "", "rr, connect, hold: server address host:port")
	n := fs.Int("n", 200, "round trips (rr), connections (connect, hold)")
	size := fs.Int("size", 64, "rr: message size in bytes")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long (serve, hold: exit after it)")
	_ = fs.Parse(os.Args[2:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	var samples []int64
	var err error
	switch mode {
	case "serve":
		err = serve(ctx, *listen)
	case "rr":
		samples, err = roundTrips(ctx, *addr, *n, *size)
	case "connect":
		samples, err = connects(ctx, *addr, *n)
	case "hold":
		err = hold(ctx, *addr, *n)
	default:
		err = fmt.Errorf("unknown mode %q (want serve, rr, connect or hold)", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rrtest:", err)
		os.Exit(1)
	}
	if samples != nil {
		_ = json.NewEncoder(os.Stdout).Encode(map[string][]int64{"samples_us": samples})
	}
}

// serve echoes every connection's bytes back until ctx ends.
func serve(ctx context.Context, listen string) error {
	ln, err := net.Listen("tcp4", listen)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

// roundTrips sends n messages of size bytes on one connection, waiting for each echo.
func roundTrips(ctx context.Context, addr string, n, size int) ([]int64, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	msg, reply := make([]byte, size), make([]byte, size)
	samples := make([]int64, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, fmt.Errorf("round trip %d: %w", i, err)
		}
		if _, err := io.ReadFull(c, reply); err != nil {
			return nil, fmt.Errorf("round trip %d: %w", i, err)
		}
		samples = append(samples, time.Since(start).Microseconds())
	}
	return samples, nil
}

// connects opens and closes n connections one after the other, timing each connect().
func connects(ctx context.Context, addr string, n int) ([]int64, error) {
	samples := make([]int64, 0, n)
	var d net.Dialer
	for i := 0; i < n; i++ {
		start := time.Now()
		c, err := d.DialContext(ctx, "tcp4", addr)
		if err != nil {
			return nil, fmt.Errorf("connection %d to %s: %w", i, addr, err)
		}
		samples = append(samples, time.Since(start).Microseconds())
		c.Close()
	}
	return samples, nil
}

// hold opens n connections, prints "ready", and keeps them open until ctx ends.
func hold(ctx context.Context, addr string, n int) error {
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var d net.Dialer
	for i := 0; i < n; i++ {
		c, err := d.DialContext(ctx, "tcp4", addr)
		if err != nil {
			return fmt.Errorf("connection %d to %s: %w", i, addr, err)
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	<-ctx.Done()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errors.New("hold: timeout reached")
	}
	return nil
}
