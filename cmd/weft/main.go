// Command weft runs and inspects a weft node: a decentralized mesh VPN for Linux.
//
// The commands are thin: `up` hands a resolved config.Config to node.Run; the read-only commands ask a
// running node over its control socket and print what it answers.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "weft:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "weft",
		Short: "weft joins machines into one private virtual network",
		Long: `weft is a decentralized mesh VPN for Linux. Every node has a TUN device with a virtual IPv4
address; nodes hold encrypted sessions over UDP or TCP, propagate routes through the mesh and relay
for each other, so every node reaches every other one.

Run a node with 'weft up'; inspect it with 'weft status', 'weft peers' and 'weft routes'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(newUpCommand(), newStatusCommand(), newPeersCommand(), newRoutesCommand(), newProxyCommand(), newCertCommand(), newDemoCommand(), newVersionCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this weft binary",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version)
		},
	}
}
