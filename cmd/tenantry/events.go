package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func init() { register(newEventsCmd) }

func newEventsCmd(a *app) *cobra.Command {
	var subject string
	var after int64
	cmd := &cobra.Command{
		Use:   "events [--subject S] [--after ID]",
		Short: "Show the registry's event log (tenants, keys, standbys, switchovers, failovers), oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			evs, err := c.Events(cmd.Context(), subject, after)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]any{"events": evs})
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tAT\tKIND\tSUBJECT\tMESSAGE")
			for _, e := range evs {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", e.ID, e.At.UTC().Format("2006-01-02 15:04:05.000"), e.Kind, e.Subject, e.Message)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "only events of this subject (a tenant, a cluster)")
	cmd.Flags().Int64Var(&after, "after", 0, "only events after this id")
	return cmd
}
