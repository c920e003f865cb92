package main

import (
	"os"

	"github.com/spf13/cobra"

	"tenantry/gateway"
	"tenantry/httpedge"
)

func init() { register(newGatewayCmd) }

func newGatewayCmd(a *app) *cobra.Command {
	var cfg gateway.RunConfig
	var secret string
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the gateway: authenticate API keys, route tenants to stacks, proxy to instances",
		Long: `Runs the HTTP gateway. It follows the registry in the control database (routes,
stacks, API keys) and swaps its routing table on every change. SIGTERM or Ctrl-C stops
accepting connections and drains in-flight requests (up to 30s).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.ControlDSN == "" {
				return usageErr("--control-dsn (or $TENANTRY_CONTROL_DSN) is required")
			}
			if secret == "" {
				return usageErr("--secret (or $TENANTRY_SECRET) is required")
			}
			cfg.Secret, cfg.Logger = []byte(secret), a.log.With("component", "gateway")
			return gateway.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listeners.Public, "listen", "127.0.0.1:8080", "address to listen on (port 0: any free port)")
	f.StringVar(&cfg.Listeners.Admin, "admin-listen", "127.0.0.1:8081", httpedge.AdminListenUsage)
	f.StringVar(&cfg.ControlDSN, "control-dsn", os.Getenv("TENANTRY_CONTROL_DSN"), "control database DSN ($TENANTRY_CONTROL_DSN)")
	f.StringVar(&secret, "secret", os.Getenv("TENANTRY_SECRET"), "platform secret that signs the tenant header ($TENANTRY_SECRET)")
	f.StringVar(&cfg.Listeners.AddrFile, "addr-file", "", "write the gateway's URL to this file once it listens")
	return cmd
}
