package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/weft-vpn/weft/internal/demo"
)

func newDemoCommand() *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Build a small mesh in network namespaces on this machine and show it working",
		Long: `Build a small weft mesh inside network namespaces on this machine (needs root) and show it
working: alpha reaches gamma only through the relay beta, services on gamma see alpha's real address,
a LAN host behind gamma is reachable, and the peers, routes and status tables of the real CLI.

Everything it creates (namespaces named weftdemo-*, processes) is removed on exit, on error and on
Ctrl-C. It exits 0 only if every check passed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the weft binary to run the nodes with: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return demo.Run(ctx, demo.Options{Binary: self, Out: cmd.OutOrStdout(), Color: isTerminal(cmd.OutOrStdout()), Keep: keep})
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the network up after the checks until Ctrl-C, and print commands to try")
	return cmd
}

// isTerminal reports whether w is a character device (a terminal), where colors are welcome.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
