package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"tenantry/httpedge"
	"tenantry/platform"
)

func init() { register(newUpCmd) }

func newUpCmd(a *app) *cobra.Command {
	var listen, gwListen, gwAdmin string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the local platform in the data directory and serve until Ctrl-C",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			fmt.Fprintf(a.stderr, "starting the local platform in %s ...\n", a.dataDir)
			r, err := platform.Run(ctx, platform.Options{Dir: a.dataDir, APIListen: listen, Logger: a.log})
			if err != nil {
				return err
			}
			defer func() {
				fmt.Fprintln(a.stderr, "stopping ...")
				sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				r.Close(sctx)
				fmt.Fprintln(a.stderr, "stopped")
			}()
			if err := r.StartApps(ctx, platform.AppOptions{GatewayListen: gwListen, GatewayAdminListen: gwAdmin}); err != nil {
				return err
			}
			tenant, key, err := r.EnsureSampleTenant(ctx)
			if err != nil {
				return err
			}
			if err := printUp(a, r, tenant, key); err != nil {
				return err
			}
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "control plane API address")
	cmd.Flags().StringVar(&gwListen, "gateway-listen", "127.0.0.1:0", "gateway address")
	cmd.Flags().StringVar(&gwAdmin, "admin-listen", "127.0.0.1:0", "gateway "+httpedge.AdminListenUsage)
	return cmd
}

func printUp(a *app, r *platform.Running, tenant, key string) error {
	st := r.Local.State
	if a.output == "json" {
		return a.printJSON(map[string]any{"api_url": r.APIURL, "admin_token": st.AdminToken,
			"control_dsn": st.ControlDSN, "data_dir": r.Local.Dir, "gateway_url": st.GatewayURL, "gateway_admin_url": st.GatewayAdminURL,
			"sample_tenant": tenant, "sample_api_key": key})
	}
	snap, err := r.Store.Snapshot(context.Background())
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "tenantry is up (data directory %s)\n\n", r.Local.Dir)
	fmt.Fprintf(a.stdout, "  control database  %s\n", st.ControlDSN)
	for _, c := range snap.Clusters {
		for _, m := range c.Members {
			fmt.Fprintf(a.stdout, "  cluster %-9s %s %-7s %s:%d\n", c.Name, m.Name, m.Role, m.Host, m.Port)
		}
	}
	fmt.Fprintf(a.stdout, "  control plane     %s (admin token in %s/platform.json)\n", r.APIURL, r.Local.Dir)
	if st.GatewayURL != "" {
		fmt.Fprintf(a.stdout, "  gateway           %s (metrics: %s/metrics)\n", st.GatewayURL, st.GatewayAdminURL)
	}
	fmt.Fprintf(a.stdout, "  stack %s        %d instances, default route\n", platform.SharedStack, len(snap.Stacks[platform.SharedStack].Instances))
	fmt.Fprintf(a.stdout, "\nSample tenant %q, API key %s\n", tenant, key)
	fmt.Fprintf(a.stdout, "  curl -s -H 'Authorization: Bearer %s' %s/v1/inventory\n", key, st.GatewayURL)
	fmt.Fprintf(a.stdout, "  curl -s -H 'Authorization: Bearer %s' -H 'Idempotency-Key: first-order' \\\n", key)
	fmt.Fprintf(a.stdout, "       -d '{\"location_id\": 1, \"lines\": [{\"product_id\": 1, \"quantity\": 2}]}' %s/v1/orders\n", st.GatewayURL)
	fmt.Fprintf(a.stdout, "\nIn another terminal (same directory):\n")
	fmt.Fprintf(a.stdout, "  tenantry status\n  tenantry cluster list\n  tenantry tenant create acme --alias %s\n  tenantry tenant list\n", platform.PooledAlias)
	fmt.Fprintf(a.stdout, "\nCtrl-C stops the platform; `tenantry up` again resumes it from the data directory.\n")
	return nil
}
