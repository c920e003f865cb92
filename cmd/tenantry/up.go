package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tenantry/control"
	"tenantry/dashboard"
	"tenantry/httpedge"
	"tenantry/move"
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
			// Crash tests stop `up` at a failpoint (as `tenantry control`).
			moves := platform.MoveOptions{Config: move.Config{
				Hook: control.MoveFailpoint(os.Getenv("TENANTRY_FAILPOINT"), os.Getenv("TENANTRY_FAILPOINT_FILE"))}}
			r, err := platform.Run(ctx, platform.Options{Dir: a.dataDir, APIListen: listen, Logger: a.log, Moves: moves})
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
	cmd.Flags().StringVar(&listen, "listen", "", "control plane API address (default: the data directory's earlier one if free, else any free port)")
	cmd.Flags().StringVar(&gwListen, "gateway-listen", "", "gateway address (default: the data directory's earlier one if free, else any free port)")
	cmd.Flags().StringVar(&gwAdmin, "admin-listen", "", "gateway "+httpedge.AdminListenUsage+" (default: the data directory's earlier one if free)")
	return cmd
}

func printUp(a *app, r *platform.Running, tenant, key string) error {
	st := r.Local.State
	if a.output == "json" {
		// Secrets (admin token, database credentials) stay in platform.json.
		return a.printJSON(map[string]any{"api_url": r.APIURL, "dashboard_url": r.APIURL + dashboard.Prefix, "state_file": filepath.Join(r.Local.Dir, platform.StateFile),
			"data_dir": r.Local.Dir, "gateway_url": st.GatewayURL, "gateway_admin_url": st.GatewayAdminURL,
			"sample_tenant": tenant, "sample_api_key": key})
	}
	snap, err := r.Store.Snapshot(context.Background())
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "tenantry is up (data directory %s)\n\n", r.Local.Dir)
	for _, c := range snap.Clusters {
		for _, m := range c.Members {
			fmt.Fprintf(a.stdout, "  cluster %-9s %s %-7s %s:%d\n", c.Name, m.Name, m.Role, m.Host, m.Port)
		}
	}
	fmt.Fprintf(a.stdout, "  control plane     %s (admin token in %s/platform.json)\n", r.APIURL, r.Local.Dir)
	fmt.Fprintf(a.stdout, "  dashboard         %s%s (log in with the admin token)\n", r.APIURL, dashboard.Prefix)
	if st.GatewayURL != "" {
		fmt.Fprintf(a.stdout, "  gateway           %s (metrics: %s/metrics)\n", st.GatewayURL, st.GatewayAdminURL)
	}
	fmt.Fprintf(a.stdout, "  stack %s        %d instances, default route\n", platform.SharedStack, len(snap.Stacks[platform.SharedStack].Instances))
	fmt.Fprintf(a.stdout, "\nSample tenant %q, API key %s\n", tenant, key)
	fmt.Fprintf(a.stdout, "  curl -s -H 'Authorization: Bearer %s' %s/v1/inventory\n", key, st.GatewayURL)
	fmt.Fprintf(a.stdout, "  curl -s -H 'Authorization: Bearer %s' -H 'Idempotency-Key: first-order' \\\n", key)
	fmt.Fprintf(a.stdout, "       -d '{\"location_id\": 1, \"lines\": [{\"product_id\": 1, \"quantity\": 2}]}' %s/v1/orders\n", st.GatewayURL)
	fmt.Fprintf(a.stdout, "\nIn another terminal (same directory):\n")
	self := selfCommand()
	fmt.Fprintf(a.stdout, "  %[1]s status\n  %[1]s cluster list\n  %[1]s tenant create acme --alias %[2]s\n  %[1]s tenant list\n", self, platform.PooledAlias)
	fmt.Fprintf(a.stdout, "\nCtrl-C stops the platform; `%s up` again resumes it from the data directory.\n", self)
	return nil
}

// selfCommand is this binary as the user must type it to run it again from
// the same directory: as invoked when that was a path (bin/tenantry), else
// its name, which the shell found on the PATH.
func selfCommand() string {
	if strings.ContainsRune(os.Args[0], filepath.Separator) {
		return os.Args[0]
	}
	return filepath.Base(os.Args[0])
}
