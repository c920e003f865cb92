package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"tenantry/platform"
)

func init() { register(newUpCmd) }

func newUpCmd(a *app) *cobra.Command {
	var listen string
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
			if err := printUp(a, r); err != nil {
				return err
			}
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "control plane API address")
	return cmd
}

func printUp(a *app, r *platform.Running) error {
	st := r.Local.State
	if a.output == "json" {
		return a.printJSON(map[string]any{"api_url": r.APIURL, "admin_token": st.AdminToken,
			"control_dsn": st.ControlDSN, "data_dir": r.Local.Dir, "gateway_url": st.GatewayURL})
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
		fmt.Fprintf(a.stdout, "  gateway           %s\n", st.GatewayURL)
	}
	fmt.Fprintf(a.stdout, "\nIn another terminal (same directory):\n")
	fmt.Fprintf(a.stdout, "  tenantry status\n  tenantry cluster list\n  tenantry tenant create acme --alias %s\n  tenantry tenant list\n", platform.PooledAlias)
	fmt.Fprintf(a.stdout, "\nCtrl-C stops the platform; `tenantry up` again resumes it from the data directory.\n")
	return nil
}
