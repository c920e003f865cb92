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
		Short: "Tenant router throughput against a bare connection pool (one-row read transactions); with --tenants, snapshot swaps and memory",
		Long: "Starts a temporary local PostgreSQL cluster, then runs the same one-row read transaction\n" +
			"through route.Router and through a bare pgxpool in interleaved rounds after a warm-up, and\n" +
			"reports both rates and the median of the rounds' ratios. With --tenants N the router's\n" +
			"registry holds N tenants, --active of them get pools first, and the time the router takes\n" +
			"to apply a new registry snapshot is reported (median of --swaps), with the process's RSS.\n" +
			"The cluster is destroyed afterwards.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Duration <= 0 || cfg.Workers <= 0 || cfg.Rounds <= 0 || cfg.Warmup <= 0 || cfg.Swaps <= 0 {
				return usageErr("--duration, --warmup, --workers, --rounds and --swaps must be positive")
			}
			if cfg.Tenants < 1 || cfg.Active < 1 || cfg.Active > cfg.Tenants {
				return usageErr("--tenants must be at least 1 and --active between 1 and --tenants")
			}
			cfg.Logger = a.log
			res, err := bench.Route(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "workers      %d, %d rounds, %.1f s per side\nrouter       %.0f tx/s\ndirect pool  %.0f tx/s\nratio        %.3f (median of rounds; of totals %.3f)\n",
				res.Workers, res.Rounds, res.DurationS, res.RouterTPS, res.DirectTPS, res.Ratio, res.RatioOfTotals)
			if res.Swaps > 0 {
				fmt.Fprintf(a.stdout, "tenants      %d registered, %d active (first transactions %.2f s)\nswap         %.3f ms median (CPU %.3f ms), %.3f ms max of %d; every tenant moved: %.3f ms\n",
					res.Tenants, res.Active, res.ActivateS, res.SnapshotSwapMs, res.SnapshotSwapCPUMs, res.SnapshotSwapMaxMs, res.Swaps, res.MoveAllSwapMs)
			}
			fmt.Fprintf(a.stdout, "memory       %.1f MB resident (%.1f MB at start; %s), Go heap %.1f MB\n",
				res.RSSMB, res.RSSStartMB, res.RSSSource, res.HeapMB)
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&cfg.Duration, "duration", 5*time.Second, "measuring time of each side, split into --rounds")
	f.DurationVar(&cfg.Warmup, "warmup", time.Second, "unmeasured run of each side before the rounds")
	f.IntVar(&cfg.Workers, "workers", 8, "concurrent transactions")
	f.IntVar(&cfg.Rounds, "rounds", 50, "interleaved rounds (router and direct alternate first); the ratio is their median")
	f.IntVar(&cfg.Tenants, "tenants", 1, "tenants registered with the router (more than 1: time snapshot swaps)")
	f.IntVar(&cfg.Active, "active", 1, "tenants given a pool (one transaction each) before measuring")
	f.IntVar(&cfg.Swaps, "swaps", 21, "snapshot swaps timed with --tenants")
	return cmd
}
