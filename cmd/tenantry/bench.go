package main

import "github.com/spf13/cobra"

// benchCommands registers `tenantry bench X` subcommands; each benchmark's
// file adds itself in init.
var benchCommands []func(*app) *cobra.Command

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "bench",
			Short: "Measure throughput and latency against a baseline measured in the same run",
		}
		for _, f := range benchCommands {
			cmd.AddCommand(f(a))
		}
		return cmd
	})
}
