package lanfw

import (
	"context"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/netlab"
)

// ssMSS finds the send MSS in `ss -ti` output ("mss:1348", not advmss/rcvmss).
var ssMSS = regexp.MustCompile(`(?:^|\s)mss:(\d+)`)

// TestForwardIntoLAN routes a TCP connection from a mesh host M through the
// node R into a LAN host L that has no route back to the mesh:
//
//	M weft0 10.144.144.2 ---- 10.144.144.1 weft0  R  lan0 192.168.50.1 ---- 192.168.50.10 eth0 L
//
// (M's end of the veth plays R's TUN, named Dev). Without weft's table the
// SYN-ACK has nowhere to go; with it, L sees R's LAN address as the source,
// and the MSS of the SYN is clamped to MTU-40.
func TestForwardIntoLAN(t *testing.T) {
	lab := netlab.New(t)
	m, r, l := lab.Host("m"), lab.Host("r"), lab.Host("l")
	lab.Link(m, "weft0", netip.MustParsePrefix("10.144.144.2/24"), r, "weft0", netip.MustParsePrefix("10.144.144.1/24"))
	lab.Link(r, "lan0", netip.MustParsePrefix("192.168.50.1/24"), l, "eth0", netip.MustParsePrefix("192.168.50.10/24"))
	m.AddRoute(t, netip.MustParsePrefix("192.168.50.0/24"), netip.MustParseAddr("10.144.144.1"))

	var (
		changed bool
		err     error
	)
	inNetns(t, r, func() { changed, err = CheckForwarding() })
	if err != nil || !changed {
		t.Fatalf("CheckForwarding in R = %v, %v; want true, nil", changed, err)
	}

	// L answers every connection with the peer address it sees and its own
	// view of the socket (no ':' in the command: socat splits on it).
	srv := l.Start(t, "socat", "-d", "-d", "TCP-LISTEN:7000,fork,reuseaddr", "SYSTEM:echo $SOCAT_PEERADDR; ss -tinH state established")
	srv.WaitLog(t, "listening on", 10*time.Second)

	dial := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		return m.RunErr(ctx, "socat", "-u", "TCP:192.168.50.10:7000,connect-timeout=3", "STDOUT")
	}

	if out, err := dial(); err == nil {
		t.Fatalf("without weft's table M reached L (L has no route back), got %q", out)
	}

	const mtu = 1400 // clamp to 1360
	tbl := install(t, r, Options{Dev: "weft0", Subnets: []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")}, SNAT: true, MTU: mtu})
	out, err := dial()
	if err != nil {
		t.Fatalf("with weft's table: %v\n%s\nR's table:\n%s", err, out, r.Run(t, "nft", "list", "ruleset"))
	}
	lines := strings.SplitN(out, "\n", 2)
	if got := strings.TrimSpace(lines[0]); got != "192.168.50.1" {
		t.Errorf("L saw the connection from %q, want 192.168.50.1 (masqueraded)\n%s", got, out)
	}
	match := ssMSS.FindStringSubmatch(out)
	if match == nil {
		t.Fatalf("no mss in L's ss output:\n%s", out)
	}
	// L's send MSS is the clamped 1360 less any TCP options (timestamps: 12);
	// unclamped it would be 1460 less options.
	if mss, _ := strconv.Atoi(match[1]); mss > mtu-40 || mss < mtu-40-40 {
		t.Errorf("L's send MSS is %d, want at most %d (clamped from 1460):\n%s", mss, mtu-40, out)
	}

	if err := tbl.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if out, err := dial(); err == nil {
		t.Errorf("after Close M still reached L, got %q", out)
	}
}
