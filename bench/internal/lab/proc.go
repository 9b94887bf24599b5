package lab

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// Proc is a long-lived process started by Host.Start; its output goes to a log file.
type Proc struct {
	desc    string
	pid     int
	logPath string
	done    chan struct{} // closed once the process has been reaped
	code    int           // exit code, valid after done
}

// Start runs a long-lived process inside the namespace. The process gets SIGKILL if the benchmark
// dies, and the Lab stops it on Close.
func (h *Host) Start(name string, args ...string) (*Proc, error) {
	path := h.logPath(name)
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("log file for %s on %s: %w", name, h.name, err)
	}
	defer f.Close() // the child has its own copy
	cmd := h.Command(context.Background(), name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &Proc{desc: h.name + ": " + name + " " + strings.Join(args, " "), logPath: path, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.desc, err)
	}
	p.pid = cmd.Process.Pid
	go func() {
		_ = cmd.Wait() // the exit code is read from ProcessState
		p.code = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	h.lab.mu.Lock()
	h.lab.procs = append(h.lab.procs, p)
	h.lab.mu.Unlock()
	return p, nil
}

// Pid returns the process id (the program itself: ip netns exec execs it).
func (p *Proc) Pid() int { return p.pid }

// Exited reports whether the process has ended, and its exit code.
func (p *Proc) Exited() (bool, int) {
	select {
	case <-p.done:
		return true, p.code
	default:
		return false, 0
	}
}

// Log returns the last n lines of the process's output.
func (p *Proc) Log(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop sends SIGTERM, waits up to 5s, then SIGKILLs and waits for the process to be reaped.
func (p *Proc) Stop() {
	if ok, _ := p.Exited(); ok {
		return
	}
	_ = syscall.Kill(p.pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(stopGrace):
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
	}
}

// String describes the process for messages.
func (p *Proc) String() string { return p.desc }
