package main

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-vpn/weft/internal/cert"
	"github.com/weft-vpn/weft/internal/session"
)

func newCertCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Make a network CA and node certificates (certificate mode)",
		Long: `In certificate mode a network CA signs, for each node, the virtual IPv4 address and the LAN
subnets it may use; nodes accept from each other only what the certificates list.

  weft cert ca --name NAME --out DIR          makes DIR/ca.crt and DIR/ca.key (keep ca.key offline)
  weft cert sign --ca DIR --hostname H --ipv4 ADDR/PREFIX [--subnet CIDR]... --out DIR
                                              makes DIR/node.crt and DIR/node.key for one node
  weft cert print FILE                        shows a certificate

Then run each node with: weft up --ca ca.crt --cert node.crt --cert-key node.key ...`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newCertCACommand(), newCertSignCommand(), newCertPrintCommand())
	return cmd
}

func newCertCACommand() *cobra.Command {
	var name, out string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Make a network CA: OUT/ca.crt and OUT/ca.key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || out == "" {
				return fmt.Errorf("weft cert ca needs --name and --out")
			}
			ca, err := cert.NewCA(name, time.Now(), validity)
			if err != nil {
				return err
			}
			if err := ca.Save(out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s (CA %q, key %s, until %s)\n",
				filepath.Join(out, cert.CACertFile), filepath.Join(out, cert.CAKeyFile), name,
				cert.Fingerprint(ca.Cert.PublicKey), ca.Cert.NotAfter.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "`NAME` of the network CA")
	cmd.Flags().StringVar(&out, "out", "", "`DIR` to write ca.crt and ca.key to (created; existing files are never overwritten)")
	cmd.Flags().DurationVar(&validity, "duration", 10*365*24*time.Hour, "how long the CA is valid")
	return cmd
}

func newCertSignCommand() *cobra.Command {
	var caDir, hostname, ipv4, out string
	var subnets []string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "sign",
		Short: "Issue a node certificate with new node keys: OUT/node.crt and OUT/node.key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caDir == "" || hostname == "" || ipv4 == "" || out == "" {
				return fmt.Errorf("weft cert sign needs --ca, --hostname, --ipv4 and --out")
			}
			ip, err := netip.ParsePrefix(ipv4)
			if err != nil {
				return fmt.Errorf("--ipv4 %q: want ADDR/PREFIX, e.g. 10.144.144.3/24", ipv4)
			}
			req := cert.NodeRequest{Name: hostname, IPv4: ip, Validity: validity}
			for _, s := range subnets {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return fmt.Errorf("--subnet %q: want CIDR, e.g. 192.168.50.0/24", s)
				}
				req.Subnets = append(req.Subnets, p)
			}
			now := time.Now()
			ca, err := cert.LoadCA(caDir, now)
			if err != nil {
				return err
			}
			id, err := session.GenerateIdentity()
			if err != nil {
				return err
			}
			req.SigningKey = id.SigningPublic()
			c, err := ca.Sign(req, now)
			if err != nil {
				return err
			}
			if err := session.WriteIdentityFile(filepath.Join(out, cert.NodeKeyFile), id); err != nil {
				return err
			}
			if err := cert.WriteNew(filepath.Join(out, cert.NodeCertFile), c.EncodePEM(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s (node %s, %s, until %s)\n",
				filepath.Join(out, cert.NodeCertFile), filepath.Join(out, cert.NodeKeyFile), id.NodeID(), ip,
				c.NotAfter.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&caDir, "ca", "", "`DIR` holding ca.crt and ca.key")
	cmd.Flags().StringVar(&hostname, "hostname", "", "the node's `NAME`")
	cmd.Flags().StringVar(&ipv4, "ipv4", "", "the node's virtual `ADDR/PREFIX`, e.g. 10.144.144.3/24")
	cmd.Flags().StringArrayVar(&subnets, "subnet", nil, "a LAN `CIDR` the node may expose (repeatable)")
	cmd.Flags().StringVar(&out, "out", "", "`DIR` to write node.crt and node.key to (created; existing files are never overwritten)")
	cmd.Flags().DurationVar(&validity, "duration", 365*24*time.Hour, "how long the certificate is valid (never past the CA's expiry)")
	return cmd
}

func newCertPrintCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "print FILE",
		Short: "Show a certificate",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cert.ReadFile(args[0])
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), c.Describe())
			return nil
		},
	}
}
