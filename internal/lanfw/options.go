package lanfw

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

const (
	// tablePrefix starts the name of every table weft installs.
	tablePrefix = "weft_"
	// maxIfName is the longest Linux interface name (IFNAMSIZ - 1).
	maxIfName = 15
	// minMTU and maxMTU are the MTUs a weft TUN device accepts (the same
	// bounds as tun.MinMTU and tun.MaxMTU).
	minMTU = 68
	maxMTU = 65535
	// mssOverhead is what an IPv4 header and a TCP header without options
	// take from the MTU: the MSS clamp is MTU-40.
	mssOverhead = 40
)

// Options says what Install sets up.
type Options struct {
	// Dev is the TUN device mesh traffic arrives on, e.g. "weft0". Required.
	Dev string
	// Subnets are the IPv4 LANs this node exposes. At least one is required;
	// host bits are ignored (192.168.50.1/24 means 192.168.50.0/24).
	Subnets []netip.Prefix
	// SNAT masquerades mesh traffic leaving into the LANs, so LAN hosts need
	// no route back to the mesh. The CLI default (--subnet-snat) is true; the
	// zero value false keeps the original source addresses.
	SNAT bool
	// MTU is the TUN device's MTU: forwarded TCP SYNs get their MSS lowered to
	// MTU-40. Required (68 to 65535); zero is an error.
	MTU int
}

// TableName returns the name of the nftables table Install creates for dev:
// "weft_<dev>", in the inet family (`nft list table inet weft_weft0`).
func TableName(dev string) string { return tablePrefix + dev }

// mss returns the MSS the forward chain clamps SYNs to.
func (o Options) mss() uint16 { return uint16(o.MTU - mssOverhead) }

// normalize checks the options and returns them with the subnets masked and
// duplicates removed. Its errors name the field and the fix.
func (o Options) normalize() (Options, error) {
	if err := checkDev(o.Dev); err != nil {
		return o, err
	}
	if o.MTU < minMTU || o.MTU > maxMTU {
		return o, fmt.Errorf("lanfw: Options.MTU %d is out of range: pass the TUN device's MTU (%d to %d)", o.MTU, minMTU, maxMTU)
	}
	if len(o.Subnets) == 0 {
		return o, errors.New("lanfw: Options.Subnets is empty: pass at least one LAN prefix to expose, e.g. 192.168.50.0/24")
	}
	seen := make(map[netip.Prefix]bool, len(o.Subnets))
	subnets := make([]netip.Prefix, 0, len(o.Subnets))
	for _, p := range o.Subnets {
		if !p.IsValid() || !p.Addr().Is4() {
			return o, fmt.Errorf("lanfw: subnet %s is not an IPv4 prefix: weft's mesh carries IPv4, pass one such as 192.168.50.0/24", p)
		}
		p = p.Masked()
		if !seen[p] {
			seen[p] = true
			subnets = append(subnets, p)
		}
	}
	o.Subnets = subnets
	return o, nil
}

// checkDev returns an error when dev cannot be a Linux interface name.
func checkDev(dev string) error {
	if dev == "" || len(dev) > maxIfName || strings.ContainsAny(dev, "/: \t\n\"\\") {
		return fmt.Errorf("lanfw: Options.Dev %q is not a valid interface name: pass the TUN device's name (1 to %d bytes, no '/', ':', quote or space), e.g. weft0", dev, maxIfName)
	}
	return nil
}
