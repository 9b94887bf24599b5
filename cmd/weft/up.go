package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/weft-vpn/weft/internal/config"
	"github.com/weft-vpn/weft/internal/node"
)

func newUpCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a weft node in the foreground",
		Long: `Run a weft node in the foreground until SIGINT or SIGTERM.

It creates the TUN device with this node's virtual IPv4 address, listens for other nodes, keeps
sessions with every --peer (retrying forever while one is down), and serves its control socket once
the node is up, so 'weft status' answering means the node is ready. On exit it removes the TUN
device, its routes and the control socket.

Every flag can also be set in the TOML file given with --config (key = flag name with '_' for '-');
a flag on the command line replaces the file's value.`,
		Example: `  weft up --network-name office --network-secret-file /etc/weft/secret \
          --ipv4 10.144.144.1/24 --listen udp://0.0.0.0:11010 --peer udp://203.0.113.7:11010`,
		Args: cobra.NoArgs,
	}
	flags := config.RegisterFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := flags.Resolve(os.Getenv)
		if err != nil {
			return err
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.SlogLevel()}))
		n, err := node.New(node.Options{Config: cfg, Version: version, Log: log})
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return n.Run(ctx)
	}
	return cmd
}
