package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"tenantry/bench"
)

func init() { benchCommands = append(benchCommands, newBenchOMSCmd) }

func newBenchOMSCmd(a *app) *cobra.Command {
	var cfg bench.OMSConfig
	cmd := &cobra.Command{
		Use:   "oms",
		Short: "Measure OMS place-order throughput and latency over real HTTP on a temporary local cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Duration <= 0 || cfg.Workers < 1 {
				return usageErr("--duration must be positive and --workers at least 1")
			}
			cfg.Logger = a.log
			res, err := bench.OMS(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "place order: %.0f orders/s over %.1fs with %d workers; p50 %.2f ms, p99 %.2f ms; %d errors\n",
				res.OrdersPerS, res.DurationS, res.Workers, res.P50Ms, res.P99Ms, res.Errors)
			return nil
		},
	}
	cmd.Flags().DurationVar(&cfg.Duration, "duration", 5*time.Second, "how long to place orders")
	cmd.Flags().IntVar(&cfg.Workers, "workers", 8, "concurrent clients")
	return cmd
}
