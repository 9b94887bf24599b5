package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpRetries is how often a netlink dump interrupted by a concurrent change
// is retried before its error is returned.
const dumpRetries = 5

// Configure sets the MTU, replaces the device's IPv4 addresses with addr
// (e.g. 10.144.144.1/24, which also makes the kernel route the /24 onto the
// device) and brings the link up.
func Configure(dev string, addr netip.Prefix, mtu int) error {
	if err := checkMTU(mtu); err != nil {
		return fmt.Errorf("configure %s: %w", dev, err)
	}
	if !addr.IsValid() || !addr.Addr().Is4() {
		return fmt.Errorf("configure %s: address %s is not an IPv4 prefix such as 10.144.144.1/24", dev, addr)
	}
	link, err := linkByName(dev)
	if err != nil {
		return fmt.Errorf("configure %s: %w", dev, err)
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("configure %s: set MTU %d: %w", dev, mtu, err)
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("configure %s: list addresses: %w", dev, err)
	}
	want := &netlink.Addr{IPNet: ipNet(addr)}
	for _, a := range addrs {
		if a.IPNet != nil && a.IPNet.String() == want.IPNet.String() {
			continue
		}
		if err := netlink.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("configure %s: remove old address %s: %w", dev, a.IPNet, err)
		}
	}
	if err := netlink.AddrReplace(link, want); err != nil {
		return fmt.Errorf("configure %s: set address %s: %w", dev, addr, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("configure %s: bring link up: %w", dev, err)
	}
	return nil
}

// AddRoute installs (replaces) dst via the device with preferred source src
// (the node's virtual IP), protocol RouteProtocol, in the main table.
func AddRoute(dev string, dst netip.Prefix, src netip.Addr) error {
	return AddRouteMTU(dev, dst, src, 0)
}

// AddRouteMTU is AddRoute with a route MTU (0: the device's), so that the kernel sizes packets (and
// TCP its MSS) for that destination below the device MTU.
func AddRouteMTU(dev string, dst netip.Prefix, src netip.Addr, mtu int) error {
	if !dst.IsValid() || !dst.Addr().Is4() {
		return fmt.Errorf("add route %s via %s: destination is not an IPv4 prefix", dst, dev)
	}
	if !src.Is4() {
		return fmt.Errorf("add route %s via %s: source %s is not an IPv4 address", dst, dev, src)
	}
	link, err := linkByName(dev)
	if err != nil {
		return fmt.Errorf("add route %s: %w", dst, err)
	}
	r := weftRoute(link, dst)
	r.Src = net.IP(src.AsSlice())
	r.MTU = mtu
	if err := netlink.RouteReplace(r); err != nil {
		hint := ""
		if errors.Is(err, unix.EINVAL) {
			hint = " (is the source address configured on the device and the link up? run Configure first)"
		}
		return fmt.Errorf("add route %s via %s src %s: %w%s", dst, dev, src, err, hint)
	}
	return nil
}

// DelRoute removes weft's route to dst via the device. Removing a route that
// is not there is not an error.
func DelRoute(dev string, dst netip.Prefix) error {
	if !dst.IsValid() || !dst.Addr().Is4() {
		return fmt.Errorf("delete route %s via %s: destination is not an IPv4 prefix", dst, dev)
	}
	link, err := linkByName(dev)
	if err != nil {
		return fmt.Errorf("delete route %s: %w", dst, err)
	}
	if err := netlink.RouteDel(weftRoute(link, dst)); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete route %s via %s: %w", dst, dev, err)
	}
	return nil
}

// Routes lists the RouteProtocol routes on dev (main table), in kernel order.
func Routes(dev string) ([]netip.Prefix, error) {
	link, err := linkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	filter := &netlink.Route{LinkIndex: link.Attrs().Index, Protocol: RouteProtocol}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes on %s: %w", dev, err)
	}
	out := make([]netip.Prefix, 0, len(routes))
	for _, r := range routes {
		if r.Dst == nil { // the default route
			out = append(out, netip.PrefixFrom(netip.IPv4Unspecified(), 0))
			continue
		}
		if p, ok := prefixOf(r.Dst); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// RouteDev returns the name of the interface the kernel would use to reach
// dst (netlink RouteGet); used by the transparent proxy and by routing-loop
// checks. A local address resolves to "lo".
func RouteDev(dst netip.Addr) (string, error) {
	if !dst.Is4() {
		return "", fmt.Errorf("route lookup %s: not an IPv4 address", dst)
	}
	routes, err := netlink.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return "", fmt.Errorf("route lookup %s: %w", dst, err)
	}
	if len(routes) == 0 || routes[0].LinkIndex == 0 {
		return "", fmt.Errorf("route lookup %s: the kernel returned no interface", dst)
	}
	link, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return "", fmt.Errorf("route lookup %s: interface index %d: %w", dst, routes[0].LinkIndex, err)
	}
	return link.Attrs().Name, nil
}

// Delete removes a link by name (used to remove a stale device left by a
// killed node); no error if it is absent.
func Delete(dev string) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("delete interface %s: %w", dev, err)
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete interface %s: %w", dev, err)
	}
	return nil
}

// LocalPrefixes lists the IPv4 prefixes configured on all interfaces except
// `except` (routing-loop checks). Each prefix keeps the interface's address
// (e.g. 192.168.1.5/24; call Masked for the network). Loopback addresses are
// included. An absent `except` interface excludes nothing.
func LocalPrefixes(except string) ([]netip.Prefix, error) {
	skip := -1
	if except != "" {
		link, err := netlink.LinkByName(except)
		switch {
		case err == nil:
			skip = link.Attrs().Index
		case !isNotFound(err):
			return nil, fmt.Errorf("list local prefixes: look up %s: %w", except, err)
		}
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list local prefixes: %w", err)
	}
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		if a.LinkIndex == skip {
			continue
		}
		if p, ok := prefixOf(a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// weftRoute is the route to dst on link that weft owns.
func weftRoute(link netlink.Link, dst netip.Prefix) *netlink.Route {
	return &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       ipNet(dst.Masked()),
		Scope:     netlink.SCOPE_LINK,
		Protocol:  RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
	}
}

// linkByName looks a link up with an error that says what to do when absent.
func linkByName(dev string) (netlink.Link, error) {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("interface %s does not exist (create the TUN device first, and check the device name)", dev)
		}
		return nil, fmt.Errorf("look up interface %s: %w", dev, err)
	}
	return link, nil
}

// isNotFound reports whether err says a link does not exist.
func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// retryDump runs a netlink dump again when a concurrent change interrupted it.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var err error
	for range dumpRetries {
		var out []T
		out, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, fmt.Errorf("%w (%d attempts; the interfaces kept changing, try again)", err, dumpRetries)
}

// ipNet converts an IPv4 prefix to the net form netlink uses.
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), 32)}
}

// prefixOf converts an IPv4 net.IPNet to a prefix, keeping the address bits.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	addr, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	addr = addr.Unmap()
	ones, bits := n.Mask.Size()
	if !addr.Is4() || bits != 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(addr, ones), true
}
