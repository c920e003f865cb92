package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"tenantry/registry"
)

// newTenantLimitsCmd is `tenantry tenant limits TENANT --rate N
// --concurrency N`: the tenant's request limits at the gateway.
func newTenantLimitsCmd(a *app) *cobra.Command {
	var l registry.Limits
	cmd := &cobra.Command{
		Use:   "limits TENANT --rate N --concurrency N",
		Short: "Set a tenant's request limits at the gateway (0: the gateway's default); over them it answers 429",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := l.Validate(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.SetTenantLimits(cmd.Context(), args[0], l)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(out)
			}
			fmt.Fprintf(a.stdout, "tenant %s: rate %s, concurrency %s (gateways apply it from their next snapshot)\n",
				out.Tenant, limitText(out.Rate, "/s"), limitText(out.Concurrency, " in flight"))
			return nil
		},
	}
	cmd.Flags().IntVar(&l.Rate, "rate", 0, "requests per second (0: the gateway's default)")
	cmd.Flags().IntVar(&l.Concurrency, "concurrency", 0, "requests in flight (0: the gateway's default)")
	return cmd
}

func limitText(n int, unit string) string {
	if n == 0 {
		return "default"
	}
	return fmt.Sprintf("%d%s", n, unit)
}
