package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"tenantry/bench"
)

func init() { benchCommands = append(benchCommands, newBenchRolloutCmd) }

func newBenchRolloutCmd(a *app) *cobra.Command {
	var opts bench.RolloutConfig
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Rollouts under load: the route switch at the gateway, a good version promoted, a 20% 5xx version rolled back",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Progress = a.stderr
			res, err := bench.Rollout(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "route switch         %.2f ms median, %.2f ms max (goal: under 100 ms)\n", res.SwitchMS, res.SwitchMaxMS)
			fmt.Fprintf(a.stdout, "good version         %d requests, %d failed (goal: 0), promoted in %.1f s\n", res.GoodRequests, res.GoodFailedRequests, res.GoodSeconds)
			fmt.Fprintf(a.stdout, "bad version          detected %.2f s, rolled back %.2f s after its first bad interval began (bound: %.0f × %.1f s + 1 s)\n",
				res.BadDetectS, res.RollbackSeconds, float64(res.FailureLimit), res.IntervalS)
			fmt.Fprintf(a.stdout, "                     %d requests, %d failed (the bad stack's injected 500s)\n", res.BadRequests, res.BadFailedRequests)
			return nil
		},
	}
	cmd.Flags().Float64Var(&opts.Rate, "rate", 150, "load during the rollouts, requests/s")
	cmd.Flags().DurationVar(&opts.Interval, "interval", 0, "analysis interval (default 1s)")
	cmd.Flags().IntVar(&opts.FailureLimit, "failure-limit", 0, "consecutive failing intervals that roll back (default 3)")
	return cmd
}
