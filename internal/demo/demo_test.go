package demo

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs `weft demo` end to end, as a user would, and checks its exit status, its key lines
// and that it left nothing behind.
func TestDemo(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("TestDemo needs root (network namespaces), and CI is set: run it as root instead of skipping")
		}
		t.Skip("TestDemo needs root (network namespaces)")
	}
	bin := filepath.Join(t.TempDir(), "weft")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/weft-vpn/weft/cmd/weft").CombinedOutput(); err != nil {
		t.Fatalf("build weft: %v\n%s", err, out)
	}

	var out bytes.Buffer
	cmd := exec.Command(bin, "demo")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("weft demo: %v\n%s", err, out.String())
	}
	want := []string{
		"3 packets transmitted, 3 received",
		"the service on gamma saw the client as 10.144.144.1:41000",
		"gamma ",             // in the peers and routes tables
		"10.144.144.1:41234", // the held flow in weft proxy, on both nodes
		"destination",
		"refused: a node uses only the address its certificate lists",
		"All checks passed",
	}
	if _, err := exec.LookPath("redis-server"); err == nil {
		want = append(want, "addr=10.144.144.1:")
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	if !strings.Contains(out.String(), "the LAN host saw the client as 192.168.50.1:") &&
		!strings.Contains(out.String(), "LAN part skipped: ") {
		t.Errorf("output shows neither the LAN host nor why the LAN part was skipped:\n%s", out.String())
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Errorf("color codes in output that is not a terminal:\n%s", out.String())
	}

	entries, err := os.ReadDir(netnsDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), NetnsPrefix) {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
	if ps, err := exec.Command("pgrep", "-f", bin+" up").Output(); err == nil {
		t.Errorf("weft nodes left running:\n%s", ps)
	}
}

func TestPickFields(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"id=3 addr=10.144.144.1:5000 laddr=10.144.144.3:6379 fd=8 cmd=client|list", "addr=10.144.144.1:5000 laddr=10.144.144.3:6379 cmd=client|list"},
		{"id=3 fd=8\nid=4 addr=a", "\naddr=a"},
	} {
		if got := pickFields(tc.in, "addr", "laddr", "cmd"); got != tc.want {
			t.Errorf("pickFields(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestGrepLines(t *testing.T) {
	in := "PING x\n64 bytes from x: icmp_seq=1\n\n--- stats ---\n1 packets transmitted, 1 received"
	want := "64 bytes from x: icmp_seq=1\n1 packets transmitted, 1 received"
	if got := grepLines(in, "bytes from", "packets transmitted"); got != want {
		t.Errorf("grepLines = %q, want %q", got, want)
	}
}
