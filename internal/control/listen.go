package control

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// probeTimeout bounds the dial Listen makes to find out whether an existing socket is live.
const probeTimeout = time.Second

// Listen prepares the control socket at path and listens on it.
//
// It creates the parent directory (0755) when missing. When a file already exists at path, Listen dials
// it: if a server answers, another node owns the socket and Listen fails; if nobody listens, the stale
// socket file is removed. A file at path that is not a socket is never removed. The new socket's mode is
// 0600, so only its owner (normally root) can use the API.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("control socket path is empty: set --control to a file path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create directory for control socket %s: %w", path, err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := listenPrivate(path)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, errNodeRunning(path) // lost a race with another node starting at the same time
	}
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("set mode 0600 on control socket %s: %w", path, err)
	}
	return ln, nil
}

// umaskMu serialises the process-wide umask change of listenPrivate.
var umaskMu sync.Mutex

// listenPrivate binds the unix socket with mode 0600 from the start (umask 0177 around the bind), so
// there is no moment at which others may connect; Listen chmods it again for good measure.
func listenPrivate(path string) (net.Listener, error) {
	umaskMu.Lock()
	defer umaskMu.Unlock()
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}

// removeStale removes path when it is a socket nobody listens on. It fails when a server answers, or when
// path is something other than a socket.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect control socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket path %s exists and is not a socket: remove it or choose another --control", path)
	}
	conn, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		_ = conn.Close()
		return errNodeRunning(path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("probe existing control socket %s: %w: remove it if no weft node uses it, or choose another --control", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale control socket %s: %w", path, err)
	}
	return nil
}

func errNodeRunning(path string) error {
	return fmt.Errorf("another weft node is running on %s: stop it or choose another --control", path)
}
