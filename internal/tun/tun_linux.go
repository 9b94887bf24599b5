package tun

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// cloneDevice is the Linux TUN clone device.
const cloneDevice = "/dev/net/tun"

// Create opens (creates) the named TUN device with the MTU, in the calling
// thread's network namespace. It asks for virtio-net headers, so wireguard-go
// enables TSO/GRO offloads when the kernel supports them (BatchSize() > 1).
//
// Unlike wireguard-go's tun.CreateTUN it does not start wireguard-go's link
// monitor: weft has no use for its up/down events, and its netlink socket can
// fail (e.g. ENOBUFS on a busy host) and would then surface as a fatal Read
// error. The device therefore owns no goroutines.
func Create(name string, mtu int) (Device, error) {
	if err := checkMTU(mtu); err != nil {
		return nil, fmt.Errorf("create TUN device %q: %w", name, err)
	}
	if name == "" || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("create TUN device %q: the name must be 1 to %d bytes long", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open(cloneDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("create TUN device %q: %s does not exist (load the tun module with `modprobe tun`; in a container, pass the device in)", name, cloneDevice)
		}
		return nil, fmt.Errorf("create TUN device %q: open %s: %w%s", name, cloneDevice, err, createHint(err))
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create TUN device %q: %w%s", name, err, createHint(err))
	}
	// From here the fd belongs to wireguard-go's os.File, even on error.
	wg, _, err := wgtun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		return nil, fmt.Errorf("create TUN device %q: set up offloads: %w", name, err)
	}
	d := &linuxDevice{wg: wg, name: name, mtu: mtu}
	link, err := linkByName(name)
	if err == nil {
		err = netlink.LinkSetMTU(link, mtu)
	}
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("create TUN device %q: set MTU %d: %w", name, mtu, err)
	}
	return d, nil
}

// createHint says how to fix a failed TUN creation.
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
	wg   wgtun.Device
	name string
	mtu  int // the MTU set at creation, used when the kernel query fails
}

var _ Device = (*linuxDevice)(nil)

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

// Close implements Device.
func (d *linuxDevice) Close() error {
	if err := d.wg.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("close TUN device %s: %w", d.name, err)
	}
	return nil
}
