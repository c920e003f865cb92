package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"tenantry/bench"
)

func init() { benchCommands = append(benchCommands, newBenchMoveCmd) }

func newBenchMoveCmd(a *app) *cobra.Command {
	var opts bench.MoveConfig
	cmd := &cobra.Command{
		Use:   "move",
		Short: "Move a 1M-row tenant: copy-to-parity vs a raw COPY pipe, the pause of 5 flips under load, verify rows/s",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Progress = a.stderr
			res, err := bench.Move(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "rows                 %d\n", res.Rows)
			fmt.Fprintf(a.stdout, "copy to parity       %.2f s (move: logical replication initial sync)\n", res.CopySeconds)
			fmt.Fprintf(a.stdout, "raw COPY pipe        %.2f s (baseline, same run, same clusters)\n", res.CopyPipeSeconds)
			fmt.Fprintf(a.stdout, "copy ratio           %.2fx (goal: at most 1.2x)\n", res.CopyRatio)
			fmt.Fprintf(a.stdout, "pause of %d flips     median %.1f ms, max %.1f ms under load; median parts %v (goal: median ≤ 100 ms, max ≤ 150 ms)\n",
				len(res.PauseMSFlips), res.PauseMS, res.PauseMSMax, res.PausePhasesMS)
			fmt.Fprintf(a.stdout, "requests             %d, failed %d (goal: 0)\n", res.Requests, res.FailedRequests)
			fmt.Fprintf(a.stdout, "verify               %.0f rows/s (goal: at least 200k rows/s)\n", res.VerifyRowsPerS)
			return nil
		},
	}
	cmd.Flags().IntVar(&opts.Orders, "orders", 350_000, "order history of the moved tenant (3 rows per order)")
	cmd.Flags().Float64Var(&opts.Rate, "rate", 200, "load during the promotion, requests/s")
	return cmd
}
