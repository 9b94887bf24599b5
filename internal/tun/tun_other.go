//go:build !linux

package tun

import (
	"fmt"
	"net/netip"
	"runtime"
)

// errNotLinux is what every kernel operation returns off Linux.
func errNotLinux() error {
	return fmt.Errorf("weft needs Linux: TUN devices and netlink are not supported on %s", runtime.GOOS)
}

// Create fails off Linux: weft needs Linux.
func Create(name string, mtu int) (Device, error) {
	return nil, fmt.Errorf("create TUN device %q: %w", name, errNotLinux())
}

// Configure fails off Linux: weft needs Linux.
func Configure(dev string, addr netip.Prefix, mtu int) error {
	return fmt.Errorf("configure %s: %w", dev, errNotLinux())
}

// AddRoute fails off Linux: weft needs Linux.
func AddRoute(dev string, dst netip.Prefix, src netip.Addr) error {
	return fmt.Errorf("add route %s via %s: %w", dst, dev, errNotLinux())
}

// AddRouteMTU fails off Linux: weft needs Linux.
func AddRouteMTU(dev string, dst netip.Prefix, src netip.Addr, mtu int) error {
	return fmt.Errorf("add route %s via %s: %w", dst, dev, errNotLinux())
}

// DelRoute fails off Linux: weft needs Linux.
func DelRoute(dev string, dst netip.Prefix) error {
	return fmt.Errorf("delete route %s via %s: %w", dst, dev, errNotLinux())
}

// Routes fails off Linux: weft needs Linux.
func Routes(dev string) ([]netip.Prefix, error) {
	return nil, fmt.Errorf("list routes on %s: %w", dev, errNotLinux())
}

// RouteDev fails off Linux: weft needs Linux.
func RouteDev(dst netip.Addr) (string, error) {
	return "", fmt.Errorf("route lookup %s: %w", dst, errNotLinux())
}

// Delete fails off Linux: weft needs Linux.
func Delete(dev string) error {
	return fmt.Errorf("delete interface %s: %w", dev, errNotLinux())
}

// LocalPrefixes fails off Linux: weft needs Linux.
func LocalPrefixes(except string) ([]netip.Prefix, error) {
	return nil, fmt.Errorf("list local prefixes: %w", errNotLinux())
}
