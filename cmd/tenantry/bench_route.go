package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"tenantry/bench"
)

func init() { benchCommands = append(benchCommands, newBenchRouteCmd) }

func newBenchRouteCmd(a *app) *cobra.Command {
	var cfg bench.RouteConfig
	cmd := &cobra.Command{
		Use:   "route",
		Short: "Tenant router throughput against a bare connection pool (one-row read transactions)",
		Long: "Starts a temporary local PostgreSQL cluster, then runs the same one-row read transaction\n" +
			"through route.Router and through a bare pgxpool in interleaved rounds, and reports both\n" +
			"rates and their ratio. The cluster is destroyed afterwards.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Duration <= 0 || cfg.Workers <= 0 || cfg.Rounds <= 0 {
				return usageErr("--duration, --workers and --rounds must be positive")
			}
			cfg.Logger = a.log
			res, err := bench.Route(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "workers      %d\nduration     %s per side\nrouter       %.0f tx/s\ndirect pool  %.0f tx/s\nratio        %.3f\n",
				res.Workers, res.Duration, res.RouterTPS, res.DirectTPS, res.Ratio)
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&cfg.Duration, "duration", 5*time.Second, "measuring time of each side")
	f.IntVar(&cfg.Workers, "workers", 8, "concurrent transactions")
	f.IntVar(&cfg.Rounds, "rounds", 10, "interleaved rounds (router and direct alternate first)")
	return cmd
}
