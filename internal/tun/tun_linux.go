package tun

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// cloneDevice is the Linux TUN clone device.
const cloneDevice = "/dev/net/tun"

// closeWait bounds how long Close waits for wireguard-go's monitor goroutines.
const closeWait = 5 * time.Second

// Create opens (creates) the named TUN device with the MTU (wireguard-go
// tun.CreateTUN, which enables vnet-header offloads, TSO/GRO, when the kernel
// supports it). The device is created in the calling thread's network
// namespace.
func Create(name string, mtu int) (Device, error) {
	if err := checkMTU(mtu); err != nil {
		return nil, fmt.Errorf("create TUN device %q: %w", name, err)
	}
	if name == "" || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("create TUN device %q: the name must be 1 to %d bytes long", name, unix.IFNAMSIZ-1)
	}
	if _, err := os.Stat(cloneDevice); err != nil {
		return nil, fmt.Errorf("create TUN device %q: %w (load the tun module with `modprobe tun`, or in a container pass --device %s)", name, err, cloneDevice)
	}
	wg, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("create TUN device %q: %w%s", name, err, createHint(err))
	}
	d := &linuxDevice{wg: wg, name: name, mtu: mtu, eventsDone: make(chan struct{})}
	// wireguard-go blocks its monitor goroutines once its event channel is
	// full, so the device owns a goroutine that drains it until Close.
	go d.drainEvents()
	return d, nil
}

// createHint says how to fix a failed CreateTUN.
func createHint(err error) string {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return " (weft needs root or CAP_NET_ADMIN: run it as root or grant the capability with `setcap cap_net_admin+ep`)"
	case errors.Is(err, unix.EBUSY):
		return " (the device is in use, probably by another weft: stop it or choose another device name)"
	case errors.Is(err, unix.EINVAL):
		return " (a non-TUN interface may already have this name: remove it or choose another device name)"
	}
	return ""
}

// linuxDevice adapts wireguard-go's tun.Device to Device.
type linuxDevice struct {
	wg         wgtun.Device
	name       string
	mtu        int           // the MTU set at creation, used when the query fails
	eventsDone chan struct{} // closed when drainEvents returns
}

var _ Device = (*linuxDevice)(nil)

// drainEvents discards wireguard-go's link events until it closes the channel.
func (d *linuxDevice) drainEvents() {
	defer close(d.eventsDone)
	for range d.wg.Events() {
	}
}

// Read implements Device.
func (d *linuxDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if err := checkReadBufs(bufs, sizes, offset); err != nil {
		return 0, err
	}
	n, err := d.wg.Read(bufs, sizes, offset)
	if err == nil {
		return n, nil
	}
	if errors.Is(err, wgtun.ErrTooManySegments) {
		return n, ErrTooManySegments
	}
	return n, fmt.Errorf("read TUN device %s: %w", d.name, err)
}

// Write implements Device.
func (d *linuxDevice) Write(bufs [][]byte, offset int) (int, error) {
	if err := checkWriteBufs(bufs, offset); err != nil {
		return 0, err
	}
	if _, err := d.wg.Write(bufs, offset); err != nil {
		// wireguard-go counts bytes, not packets, and joins per-packet errors.
		return 0, fmt.Errorf("write TUN device %s: %w", d.name, err)
	}
	return len(bufs), nil
}

// BatchSize implements Device.
func (d *linuxDevice) BatchSize() int { return d.wg.BatchSize() }

// Name implements Device.
func (d *linuxDevice) Name() string { return d.name }

// MTU implements Device. It asks the kernel, so it follows MTU changes made
// with Configure or by an administrator.
func (d *linuxDevice) MTU() int {
	mtu, err := d.wg.MTU()
	if err != nil {
		return d.mtu
	}
	return mtu
}

// Close implements Device. It returns once wireguard-go's monitor goroutines
// have stopped.
func (d *linuxDevice) Close() error {
	err := d.wg.Close()
	select {
	case <-d.eventsDone:
	case <-time.After(closeWait):
		return fmt.Errorf("close TUN device %s: its link monitor did not stop within %v", d.name, closeWait)
	}
	if err != nil {
		return fmt.Errorf("close TUN device %s: %w", d.name, err)
	}
	return nil
}
