//go:build !linux

package lanfw

import (
	"fmt"
	"net/netip"
	"runtime"
)

// errNotLinux is what every kernel operation returns off Linux.
func errNotLinux() error {
	return fmt.Errorf("weft needs Linux to expose subnets: nftables and ip_forward are not available on %s", runtime.GOOS)
}

// Table is weft's installed nftables table; off Linux there is none.
type Table struct{}

// CheckForwarding fails off Linux: weft needs Linux.
func CheckForwarding() (changed bool, err error) {
	return false, fmt.Errorf("lanfw: check ip_forward: %w", errNotLinux())
}

// RestoreForwarding fails off Linux: weft needs Linux.
func RestoreForwarding() error { return fmt.Errorf("lanfw: restore ip_forward: %w", errNotLinux()) }

// Install fails off Linux: weft needs Linux.
func Install(opts Options) (*Table, error) {
	return nil, fmt.Errorf("lanfw: install table %s: %w", TableName(opts.Dev), errNotLinux())
}

// Name returns the empty string off Linux.
func (t *Table) Name() string { return "" }

// Close does nothing off Linux.
func (t *Table) Close() error { return nil }

// ForwardWarnings fails off Linux: weft needs Linux.
func ForwardWarnings(dev string, subnets []netip.Prefix) ([]string, error) {
	return nil, fmt.Errorf("lanfw: list nftables chains: %w", errNotLinux())
}

// GuardTableName is the name of the anti-spoofing table for dev.
func GuardTableName(dev string) string { return tablePrefix + dev + "_guard" }

// Guard is the anti-spoofing table; off Linux there is none.
type Guard struct{}

// InstallGuard fails off Linux: weft needs Linux.
func InstallGuard(dev string) (*Guard, error) {
	return nil, fmt.Errorf("lanfw: install table %s: %w", GuardTableName(dev), errNotLinux())
}

// SetSources does nothing off Linux.
func (g *Guard) SetSources([]netip.Prefix) error { return nil }

// Close does nothing off Linux.
func (g *Guard) Close() error { return nil }
