package lanfw

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-vpn/weft/internal/netlab"
)

func TestCheckForwardingFreshNamespace(t *testing.T) {
	h := netlab.New(t).Host("r")
	rootBefore, err := os.ReadFile(ipForwardPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Run(t, "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(got) != "0" {
		t.Fatalf("a fresh namespace has ip_forward %q, want 0", got)
	}
	var changed [2]bool
	var errs [2]error
	inNetns(t, h, func() {
		changed[0], errs[0] = CheckForwarding()
		changed[1], errs[1] = CheckForwarding()
	})
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("CheckForwarding: %v, %v", errs[0], errs[1])
	}
	if !changed[0] || changed[1] {
		t.Errorf("changed = %v then %v, want true then false", changed[0], changed[1])
	}
	if got := h.Run(t, "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(got) != "1" {
		t.Errorf("ip_forward in the namespace is %q after CheckForwarding, want 1", got)
	}
	if rootAfter, err := os.ReadFile(ipForwardPath); err != nil || string(rootAfter) != string(rootBefore) {
		t.Errorf("ip_forward of the test's own namespace changed: %q -> %q (%v)", rootBefore, rootAfter, err)
	}
}

func TestCheckForwardingFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		changed       bool
		after, errHas string
	}{
		{name: "off", content: "0\n", changed: true, after: "1\n"},
		{name: "on", content: "1\n", after: "1\n"},
		{name: "garbage", content: "2\n", after: "2\n", errHas: `reads "2", want 0 or 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			changed, err := checkForwarding(path)
			if tc.errHas == "" && err != nil || tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
				t.Fatalf("err = %v, want one containing %q", err, tc.errHas)
			}
			if changed != tc.changed {
				t.Errorf("changed = %v, want %v", changed, tc.changed)
			}
			if b, _ := os.ReadFile(path); string(b) != tc.after {
				t.Errorf("file holds %q, want %q", b, tc.after)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		if _, err := checkForwarding(filepath.Join(dir, "nope")); err == nil || !strings.Contains(err.Error(), "sysctl net.ipv4.ip_forward") {
			t.Errorf("err = %v, want a read error that says how to check", err)
		}
	})
	t.Run("not writable", func(t *testing.T) {
		// Read-only sysctls refuse writes even from root; find one that reads 0.
		for _, path := range []string{"/proc/sys/fs/quota/writes", "/proc/sys/fs/quota/syncs", "/proc/sys/fs/aio-nr"} {
			if b, err := os.ReadFile(path); err != nil || strings.TrimSpace(string(b)) != "0" {
				continue
			}
			changed, err := checkForwarding(path)
			if changed || err == nil || !strings.Contains(err.Error(), "could not be enabled") || !strings.Contains(err.Error(), "sysctl -w net.ipv4.ip_forward=1") {
				t.Fatalf("changed = %v, err = %v; want an error saying how to enable it", changed, err)
			}
			return
		}
		t.Skip("no read-only file reading 0 found to stand in for a locked ip_forward")
	})
}

func TestRestoreForwardingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ip_forward")
	if err := os.WriteFile(path, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := checkForwarding(path); err != nil || !changed {
		t.Fatalf("checkForwarding = %v, %v", changed, err)
	}
	if err := restoreForwarding(path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "0\n" {
		t.Fatalf("after restore the file reads %q, want 0", b)
	}
	if err := restoreForwarding(filepath.Join(t.TempDir(), "missing", "x")); err == nil {
		t.Fatal("restore to an unwritable path gave no error")
	}
}
