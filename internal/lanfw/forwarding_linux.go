package lanfw

import (
	"fmt"
	"os"
	"strings"
)

// ipForwardPath is the sysctl net.ipv4.ip_forward. Files under /proc/sys/net
// show the network namespace of the thread that opens them.
const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// CheckForwarding makes sure net.ipv4.ip_forward is 1 in the network
// namespace of the calling thread. If it was 0 it turns it on and reports
// changed = true, so the node can log that it did. If it cannot, the error
// says how to fix it.
func CheckForwarding() (changed bool, err error) {
	return checkForwarding(ipForwardPath)
}

// checkForwarding is CheckForwarding on the sysctl file at path.
func checkForwarding(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("lanfw: read net.ipv4.ip_forward (%s): %w: is /proc mounted? check with `sysctl net.ipv4.ip_forward`", path, err)
	}
	switch v := strings.TrimSpace(string(b)); v {
	case "1":
		return false, nil
	case "0":
	default:
		return false, fmt.Errorf("lanfw: net.ipv4.ip_forward (%s) reads %q, want 0 or 1: check with `sysctl net.ipv4.ip_forward`", path, v)
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return false, fmt.Errorf("lanfw: net.ipv4.ip_forward is 0 and could not be enabled (%w): "+
			"run `sysctl -w net.ipv4.ip_forward=1` as root (and put `net.ipv4.ip_forward = 1` in /etc/sysctl.d/99-weft.conf "+
			"to keep it after a reboot), or run weft as root so it can set it itself", err)
	}
	return true, nil
}

// RestoreForwarding turns net.ipv4.ip_forward off again in the calling thread's namespace: the node
// calls it on exit when CheckForwarding had turned it on, so that stopping weft leaves the host as it
// found it.
func RestoreForwarding() error { return restoreForwarding(ipForwardPath) }

func restoreForwarding(path string) error {
	if err := os.WriteFile(path, []byte("0\n"), 0o644); err != nil {
		return fmt.Errorf("lanfw: restore net.ipv4.ip_forward to 0: %w", err)
	}
	return nil
}
