package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"tenantry/bench"
)

func init() { benchCommands = append(benchCommands, newBenchFailoverCmd) }

func newBenchFailoverCmd(a *app) *cobra.Command {
	var opts bench.FailoverConfig
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Hot standbys under load: a switchover, and a kill -9 of the primary with asynchronous and synchronous replication",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Progress = a.stderr
			res, err := bench.Failover(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "kill -9 of the primary  detected %.2f s, promoted %.2f s later, first write %.2f s after the kill (goal: under 5 s)\n",
				res.DetectS, res.PromoteS, res.FirstWriteS)
			fmt.Fprintf(a.stdout, "                         %d failed requests under load\n", res.FailoverFailedRequests)
			fmt.Fprintf(a.stdout, "switchover               paused %.1f ms (goal: under 1,000 ms), %d of %d requests failed (goal: 0)\n",
				res.SwitchoverPauseMS, res.SwitchoverFailedRequests, res.SwitchoverRequests)
			fmt.Fprintf(a.stdout, "lost acknowledged writes %d of %d with synchronous replication (goal: 0), %d of %d without\n",
				res.LostWritesSync, res.CheckedSync, res.LostWritesAsync, res.CheckedAsync)
			return nil
		},
	}
	cmd.Flags().Float64Var(&opts.Rate, "rate", 100, "load, requests/s")
	return cmd
}
