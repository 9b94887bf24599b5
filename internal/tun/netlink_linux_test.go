package tun

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

// addrsOf lists the IPv4 addresses on dev.
func addrsOf(t *testing.T, dev string) []string {
	t.Helper()
	link, err := netlink.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.IPNet.String())
	}
	return out
}

// sortedPrefixes returns ps as sorted strings.
func sortedPrefixes(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}

func TestConfigure(t *testing.T) {
	enterNetns(t)
	dev, err := Create("wt0", 1400)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })

	if err := Configure("wt0", netip.MustParsePrefix("10.99.0.1/24"), 1300); err != nil {
		t.Fatal(err)
	}
	if err := Configure("wt0", netip.MustParsePrefix("10.99.1.1/16"), 1280); err != nil {
		t.Fatal(err)
	}
	if got := addrsOf(t, "wt0"); !slices.Equal(got, []string{"10.99.1.1/16"}) {
		t.Errorf("addresses after second Configure = %v, want only 10.99.1.1/16", got)
	}
	link, err := netlink.LinkByName("wt0")
	if err != nil {
		t.Fatal(err)
	}
	if link.Attrs().MTU != 1280 || link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("link MTU %d flags %v, want 1280 and up", link.Attrs().MTU, link.Attrs().Flags)
	}
	if name, err := RouteDev(netip.MustParseAddr("10.99.200.7")); err != nil || name != "wt0" {
		t.Errorf("RouteDev(10.99.200.7) = %q, %v; want wt0 (the kernel's route for the /16)", name, err)
	}

	for _, tt := range []struct {
		dev  string
		addr string
		mtu  int
		want string
	}{
		{"wt0", "fd00::1/64", 1400, "not an IPv4 prefix"},
		{"wt0", "10.99.0.1/24", 20, "out of range"},
		{"nosuch0", "10.99.0.1/24", 1400, "does not exist"},
	} {
		err := Configure(tt.dev, netip.MustParsePrefix(tt.addr), tt.mtu)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Configure(%s, %s, %d) = %v, want an error containing %q", tt.dev, tt.addr, tt.mtu, err, tt.want)
		}
	}
}

func TestRoutes(t *testing.T) {
	enterNetns(t)
	dev, err := Create("wt0", 1400)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	src := netip.MustParseAddr("10.99.0.1")
	if err := Configure("wt0", netip.PrefixFrom(src, 24), 1400); err != nil {
		t.Fatal(err)
	}

	for _, dst := range []string{"10.98.0.0/24", "10.97.5.7/24", "10.98.0.0/24", "0.0.0.0/0"} {
		if err := AddRoute("wt0", netip.MustParsePrefix(dst), src); err != nil {
			t.Fatalf("AddRoute(%s): %v", dst, err)
		}
	}
	got, err := Routes("wt0")
	if err != nil {
		t.Fatal(err)
	}
	// Masked, replaced rather than duplicated, and without the kernel's /24.
	want := []string{"0.0.0.0/0", "10.97.5.0/24", "10.98.0.0/24"}
	if s := sortedPrefixes(got); !slices.Equal(s, want) {
		t.Fatalf("Routes = %v, want %v", s, want)
	}
	kernel, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range kernel {
		if !r.Src.Equal(net.IP(src.AsSlice())) || r.Scope != netlink.SCOPE_LINK {
			t.Errorf("route %v: src %v scope %v, want src %v scope link", r.Dst, r.Src, r.Scope, src)
		}
	}

	for addr, want := range map[string]string{"10.98.0.9": "wt0", "10.97.5.200": "wt0", "192.0.2.1": "wt0", "10.99.0.1": "lo"} {
		if name, err := RouteDev(netip.MustParseAddr(addr)); err != nil || name != want {
			t.Errorf("RouteDev(%s) = %q, %v; want %s", addr, name, err, want)
		}
	}

	for _, dst := range []string{"10.98.0.0/24", "10.98.0.0/24", "0.0.0.0/0"} {
		if err := DelRoute("wt0", netip.MustParsePrefix(dst)); err != nil {
			t.Fatalf("DelRoute(%s): %v", dst, err)
		}
	}
	got, err = Routes("wt0")
	if err != nil {
		t.Fatal(err)
	}
	if s := sortedPrefixes(got); !slices.Equal(s, []string{"10.97.5.0/24"}) {
		t.Errorf("Routes after DelRoute = %v, want [10.97.5.0/24]", s)
	}
	if name, err := RouteDev(netip.MustParseAddr("192.0.2.1")); err == nil {
		t.Errorf("RouteDev(192.0.2.1) with no default route = %q, want an error", name)
	}

	if err := AddRoute("wt0", netip.MustParsePrefix("fd00::/64"), src); err == nil {
		t.Error("AddRoute with an IPv6 destination succeeded")
	}
	if err := AddRoute("nosuch0", netip.MustParsePrefix("10.1.0.0/16"), src); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("AddRoute on a missing device: %v, want a 'does not exist' error", err)
	}
	if _, err := Routes("nosuch0"); err == nil {
		t.Error("Routes on a missing device succeeded")
	}
}

func TestLocalPrefixesAndDelete(t *testing.T) {
	enterNetns(t)
	dev, err := Create("wt0", 1400)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	if err := Configure("wt0", netip.MustParsePrefix("10.99.0.1/24"), 1400); err != nil {
		t.Fatal(err)
	}
	// A veth pair: unlike dummy, veth is built into most test kernels.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wtd0"}, PeerName: "wtd1"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth pair: %v", err)
	}
	if err := Configure("wtd0", netip.MustParsePrefix("192.0.2.5/24"), 1500); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		except string
		want   []string
	}{
		{"wt0", []string{"192.0.2.5/24"}},
		{"", []string{"10.99.0.1/24", "192.0.2.5/24"}},
		{"nosuch0", []string{"10.99.0.1/24", "192.0.2.5/24"}},
	} {
		got, err := LocalPrefixes(tt.except)
		if err != nil {
			t.Fatal(err)
		}
		// lo (down in a fresh namespace) has no address; ignore it anyway.
		got = slices.DeleteFunc(got, func(p netip.Prefix) bool { return p.Addr().IsLoopback() })
		if s := sortedPrefixes(got); !slices.Equal(s, tt.want) {
			t.Errorf("LocalPrefixes(%q) = %v, want %v", tt.except, s, tt.want)
		}
	}

	for _, name := range []string{"wtd0", "wtd0", "wt0"} {
		if err := Delete(name); err != nil {
			t.Fatalf("Delete(%s): %v", name, err)
		}
		if _, err := netlink.LinkByName(name); err == nil {
			t.Fatalf("%s still exists after Delete", name)
		}
	}
	// The open device survives losing its link: Close still works.
	if err := dev.Close(); err != nil {
		t.Errorf("Close after Delete: %v", err)
	}
}
