package main

import (
	"context"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-vpn/weft/internal/control"
)

// queryFlags are the flags every read-only command takes.
type queryFlags struct {
	control string
	json    bool
}

func (q *queryFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&q.control, "control", "/run/weft/weft0.sock", "control socket of the node to ask (weft up --control)")
	cmd.Flags().BoolVar(&q.json, "json", false, "print JSON instead of a table")
}

// newQueryCommand builds a read-only command that fetches a value from the node and prints it as a
// table or as JSON.
func newQueryCommand[T any](use, short string, fetch func(context.Context, *control.Client) (T, error),
	table func(io.Writer, T) error) *cobra.Command {
	var q queryFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			v, err := fetch(ctx, control.NewClient(q.control))
			if err != nil {
				return err
			}
			if q.json {
				return control.WriteJSON(cmd.OutOrStdout(), v)
			}
			return table(cmd.OutOrStdout(), v)
		},
	}
	q.register(cmd)
	return cmd
}

func newStatusCommand() *cobra.Command {
	return newQueryCommand("status", "Show this node: identity, address, listeners, warnings, drops",
		func(ctx context.Context, c *control.Client) (control.Status, error) { return c.Status(ctx) }, control.WriteStatus)
}

func newPeersCommand() *cobra.Command {
	return newQueryCommand("peers", "List every other node in the network, direct or relayed",
		func(ctx context.Context, c *control.Client) ([]control.Peer, error) { return c.Peers(ctx) }, func(w io.Writer, ps []control.Peer) error { return control.WritePeers(w, ps, time.Now()) })
}

func newRoutesCommand() *cobra.Command {
	return newQueryCommand("routes", "List every remote prefix and the node it goes to",
		func(ctx context.Context, c *control.Client) ([]control.Route, error) { return c.Routes(ctx) }, control.WriteRoutes)
}

func newProxyCommand() *cobra.Command {
	return newQueryCommand("proxy", "List the TCP flows this node carries over the KCP proxy, with their real 4-tuple",
		func(ctx context.Context, c *control.Client) ([]control.ProxyFlow, error) { return c.Proxy(ctx) }, control.WriteProxy)
}
