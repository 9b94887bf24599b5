package demo

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Proc is a long-lived process started by Topology.Start, its stdout and stderr going to a log file.
type Proc struct {
	desc    string // "host: program args" for messages
	cmd     *exec.Cmd
	logPath string

	done chan struct{} // closed once the process has been reaped
}

// startProc starts cmd with its output appended to the file logPath.
func startProc(desc string, cmd *exec.Cmd, logPath string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log file for %s: %w", desc, err)
	}
	defer f.Close() // the child has its own copy of the descriptor
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", desc, err)
	}
	p := &Proc{desc: desc, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // how it ended shows in Exited and the log
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done returns a channel closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM, waits up to grace for the process to exit, then sends SIGKILL and waits for it
// to be reaped. A process that has exited already is fine.
func (p *Proc) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.desc, err)
	}
	if p.waitFor(grace) {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.desc, err)
	}
	if !p.waitFor(5 * time.Second) {
		return fmt.Errorf("%s (pid %d) still running after SIGKILL", p.desc, p.cmd.Process.Pid)
	}
	return nil
}

// waitFor waits up to d for the process to end and reports whether it did.
func (p *Proc) waitFor(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// LogTail returns the last n non-empty lines the process wrote.
func (p *Proc) LogTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(log %s unreadable: %v)", p.logPath, err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
