package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// stopGrace is how long cleanup waits after SIGTERM before SIGKILL.
	stopGrace = 5 * time.Second
	// reapTimeout bounds the wait for a SIGKILLed process to be reaped.
	reapTimeout = 10 * time.Second
	// tailLines is how many log lines a failed test shows per process.
	tailLines = 60
)

// Proc is a long-lived process started by Host.Start. Its methods are safe for concurrent use.
type Proc struct {
	desc    string // "host: name args" for messages
	cmd     *exec.Cmd
	logPath string

	done     chan struct{} // closed once the process has been reaped
	exitCode int           // valid after done is closed
}

// Start runs a long-lived process inside the namespace (e.g. `weft up ...`), its stdout and stderr
// going to a log file under t.TempDir(). The process gets SIGKILL if the test binary dies.
//
// On cleanup the process is stopped: SIGTERM, up to 5s to exit, then SIGKILL. A process that already
// exited is fine. If the test failed, the last 60 lines of the log are shown with t.Logf.
func (h *Host) Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), h.name+"-"+filepath.Base(name)+"-*.log")
	if err != nil {
		t.Fatalf("netlab: log file for %s on %s: %v", name, h.name, err)
	}
	defer f.Close() // the child has its own copy of the descriptor

	cmd := h.Command(context.Background(), name, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	// ip netns exec execs the program, so the death signal (kept across exec) reaches it. It fires
	// when the thread that forked exits, which Go threads do only after an unmatched LockOSThread.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &Proc{
		desc:    h.name + ": " + strings.Join(append([]string{name}, args...), " "),
		cmd:     cmd,
		logPath: f.Name(),
		done:    make(chan struct{}),
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("netlab: start %s: %v", p.desc, err)
	}
	go func() {
		_ = cmd.Wait() // the exit status is read from ProcessState
		p.exitCode = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.Signal(syscall.SIGTERM)
			if _, err := p.Wait(stopGrace); err != nil {
				t.Logf("netlab: %s did not exit %v after SIGTERM; sending SIGKILL", p.desc, stopGrace)
				p.Kill()
			}
		}
		if !p.exited() {
			t.Errorf("netlab: %s (pid %d) still not reaped %v after SIGKILL", p.desc, p.Pid(), reapTimeout)
		}
		if t.Failed() {
			t.Logf("netlab: last %d log lines of %s (%s):\n%s", tailLines, p.desc, p.logPath, tail(p.Log(), tailLines))
		}
	})
	return p
}

// Pid returns the process id of the program. It is at first the pid of `ip netns exec`, which becomes
// the program when ip execs it a moment after Start; signals sent before then end ip, and so the program.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Log returns everything the process wrote to stdout and stderr so far.
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(log %s unreadable: %v)", p.logPath, err)
	}
	return string(b)
}

// Signal sends sig to the process. It returns an error wrapping os.ErrProcessDone if the process has
// exited already.
func (p *Proc) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %v to %s: %w", sig, p.desc, err)
	}
	return nil
}

// Wait waits up to timeout for the process to exit and returns its exit code, which is -1 when a
// signal ended it. It returns an error if the process is still running after timeout. Wait can be
// called any number of times.
func (p *Proc) Wait(timeout time.Duration) (exitCode int, err error) {
	if p.exited() { // so that Wait(0) reliably reports a process that has exited
		return p.exitCode, nil
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.exitCode, nil
	case <-timer.C:
		return 0, fmt.Errorf("%s (pid %d) still running after %v", p.desc, p.Pid(), timeout)
	}
}

// Kill sends SIGKILL and waits (up to 10s) until the process has been reaped. Killing a process that
// already exited does nothing.
func (p *Proc) Kill() {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return // cannot signal it; the caller sees it still running
	}
	_, _ = p.Wait(reapTimeout)
}

// WaitLog polls the log until it contains substr. It fails the test, showing the end of the log, on
// timeout or when the process exits without having written substr.
func (p *Proc) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		exited := p.exited() // read before the log, so a last line written before exit is seen
		log := p.Log()
		switch {
		case strings.Contains(log, substr):
			return
		case exited:
			t.Fatalf("netlab: %s exited (code %d) without logging %q; log:\n%s", p.desc, p.exitCode, substr, tail(log, tailLines))
		case time.Now().After(deadline):
			t.Fatalf("netlab: %s did not log %q within %v; log:\n%s", p.desc, substr, timeout, tail(log, tailLines))
		}
		time.Sleep(pollInterval)
	}
}

// exited reports whether the process has exited and been reaped.
func (p *Proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
