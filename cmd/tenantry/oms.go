package main

import (
	"os"

	"github.com/spf13/cobra"

	"tenantry/httpedge"
	"tenantry/oms/instance"
)

func init() { register(newOMSCmd) }

func newOMSCmd(a *app) *cobra.Command {
	var cfg instance.Config
	var secret, name, stack string
	cmd := &cobra.Command{
		Use:   "oms",
		Short: "Serve the reference order-management service (OMS) API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.ControlDSN == "" {
				return usageErr("--control-dsn (or TENANTRY_CONTROL_DSN) is required")
			}
			if secret == "" {
				return usageErr("--secret (or TENANTRY_SECRET) is required")
			}
			cfg.Secret, cfg.Logger = []byte(secret), a.log.With("service", "oms", "name", name, "stack", stack)
			return instance.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listeners.Public, "listen", "127.0.0.1:0", "address to listen on")
	f.StringVar(&cfg.Listeners.Admin, "admin-listen", "127.0.0.1:0", httpedge.AdminListenUsage)
	f.StringVar(&cfg.Listeners.AddrFile, "addr-file", "", "write the http://host:port URL here once listening")
	f.StringVar(&cfg.ControlDSN, "control-dsn", os.Getenv("TENANTRY_CONTROL_DSN"), "control database DSN ($TENANTRY_CONTROL_DSN)")
	f.StringVar(&secret, "secret", os.Getenv("TENANTRY_SECRET"), "platform secret: verifies tenant headers, derives tenant DB passwords ($TENANTRY_SECRET)")
	f.StringVar(&name, "name", "", "instance name (a label in logs)")
	f.StringVar(&stack, "stack", "", "stack name (a label in logs)")
	return cmd
}
