//go:build tools

// Package weft pins the libraries the packages under internal/ are built on, so go.mod and go.sum hold
// them before every package imports them. Remove an import here once real code imports that module.
package weft

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/flynn/noise"
	_ "github.com/google/nftables"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "github.com/xtaci/kcp-go/v5"
	_ "github.com/xtaci/smux"
	_ "golang.org/x/crypto/argon2"
	_ "golang.org/x/crypto/chacha20poly1305"
	_ "golang.org/x/net/ipv4"
	_ "golang.org/x/sys/unix"
	_ "golang.zx2c4.com/wireguard/tun"
	_ "gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	_ "gvisor.dev/gvisor/pkg/tcpip/link/channel"
	_ "gvisor.dev/gvisor/pkg/tcpip/stack"
	_ "gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)
