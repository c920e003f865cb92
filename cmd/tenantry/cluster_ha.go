package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tenantry/control"
	"tenantry/ha"
	"tenantry/workflow"
)

// addHACmds adds the standby and switchover subcommands of `cluster`.
func addHACmds(a *app, cmd *cobra.Command) {
	var zone string
	add := &cobra.Command{
		Use:   "add-standby CLUSTER [--zone Z]",
		Short: "Add a streaming standby to a cluster (local clusters: pg_basebackup from the primary)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if a.output != "json" {
				fmt.Fprintf(a.stderr, "copying the primary of cluster %s (pg_basebackup, streaming)...\n", args[0])
			}
			m, err := c.AddStandby(cmd.Context(), args[0], control.AddStandbyRequest{Zone: zone})
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(m)
			}
			fmt.Fprintf(a.stdout, "cluster %s standby %s at %s:%d, zone %s\n", args[0], m.Name, m.Host, m.Port, m.Zone)
			return nil
		},
	}
	add.Flags().StringVar(&zone, "zone", "", "zone of the new standby (default: the provider's, \"local\")")
	cmd.AddCommand(add)
	cmd.AddCommand(&cobra.Command{
		Use:   "remove-standby CLUSTER MEMBER",
		Short: "Remove a standby (or a fenced former primary) of a cluster",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.RemoveStandby(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]string{"cluster": args[0], "removed": args[1]})
			}
			fmt.Fprintf(a.stdout, "cluster %s: standby %s removed\n", args[0], args[1])
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "set-sync CLUSTER on|off",
		Short: "Turn a cluster's synchronous replication on (a commit waits for one standby) or off",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var on bool
			switch args[1] {
			case "on":
				on = true
			case "off":
			default:
				return usageErr("set-sync takes on or off, not %q", args[1])
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			cl, err := c.SetSync(cmd.Context(), args[0], on)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(cl)
			}
			fmt.Fprintf(a.stdout, "cluster %s: synchronous replication %s\n", args[0], args[1])
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rejoin CLUSTER MEMBER",
		Short: "Rebuild a fenced former primary as a streaming standby of the primary (fresh base backup)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Rejoin(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]string{"cluster": args[0], "rejoined": args[1]})
			}
			fmt.Fprintf(a.stdout, "cluster %s: %s rebuilt as a streaming standby\n", args[0], args[1])
			return nil
		},
	})
	var to string
	sw := &cobra.Command{
		Use:   "switchover CLUSTER [--to MEMBER]",
		Short: "Make a standby the primary with no failed request: pause, catch up, stop, promote, repoint, resume, rejoin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			in, err := c.Switchover(cmd.Context(), args[0], to)
			if err != nil {
				return err
			}
			return followHA(cmd, a, c, in)
		},
	}
	sw.Flags().StringVar(&to, "to", "", "the standby to promote (default: the one with the least replay lag)")
	cmd.AddCommand(sw)
	var sets []string
	up := &cobra.Command{
		Use:   "upgrade CLUSTER --set name=value ... [--to MEMBER]",
		Short: "Apply settings (restart-requiring ones stand in for a server upgrade) to the standby, switch over to it, then to the old primary",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			settings := map[string]string{}
			for _, kv := range sets {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usageErr("--set takes name=value, not %q", kv)
				}
				settings[k] = v
			}
			if len(settings) == 0 {
				return usageErr("at least one --set name=value is required")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			in, err := c.Upgrade(cmd.Context(), args[0], to, settings)
			if err != nil {
				return err
			}
			return followHA(cmd, a, c, in)
		},
	}
	up.Flags().StringArrayVar(&sets, "set", nil, "a setting to apply, name=value (repeatable)")
	up.Flags().StringVar(&to, "to", "", "the standby to promote (default: the one with the least replay lag)")
	cmd.AddCommand(up)
}

// followHA polls a switchover or upgrade until it ends and prints it.
func followHA(cmd *cobra.Command, a *app, c *control.Client, in *ha.Info) error {
	var err error
	if a.output != "json" {
		fmt.Fprintf(a.stderr, "%s %s of cluster %s: %s -> %s\n", in.Kind, in.ID, in.Data.Cluster, in.Data.From, in.Data.To)
	}
	for in.Status == workflow.StatusRunning {
		select {
		case <-cmd.Context().Done():
			return cmd.Context().Err()
		case <-time.After(100 * time.Millisecond):
		}
		if in, err = c.SwitchoverInfo(cmd.Context(), in.ID); err != nil {
			return err
		}
	}
	if a.output == "json" {
		if err := a.printJSON(in); err != nil {
			return err
		}
	} else {
		printSwitchover(a, in)
	}
	if in.Status != workflow.StatusSucceeded {
		return fmt.Errorf("%s %s %s: %s", in.Kind, in.ID, in.Status, in.Error)
	}
	return nil
}

func printSwitchover(a *app, in *ha.Info) {
	d := in.Data
	fmt.Fprintf(a.stdout, "%s %s: %s; primary of cluster %s is %s (was %s)\n", in.Kind, in.ID, in.Status, d.Cluster, d.To, d.From)
	if len(d.Settings) > 0 {
		fmt.Fprintf(a.stdout, "  settings %v\n", d.Settings)
	}
	if d.PauseMS > 0 {
		fmt.Fprintf(a.stdout, "  %d tenants paused %.1f ms (ms into the pause: acks %.1f, catchup %.1f, stop %.1f, promote %.1f, repoint %.1f)\n",
			len(d.Paused), d.PauseMS, d.Parts["acks"], d.Parts["catchup"], d.Parts["stop"], d.Parts["promote"], d.Parts["repoint"])
	}
	if d.Rejoined {
		fmt.Fprintf(a.stdout, "  %s rejoined as a standby of %s\n", d.From, d.To)
	}
}

// printClusters prints clusters with their members' probes and lag.
func (a *app) printClusters(sts []*control.ClusterStatus) error {
	if a.output == "json" {
		return a.printJSON(map[string]any{"clusters": sts})
	}
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CLUSTER\tMEMBER\tROLE\tADDRESS\tZONE\tSTATE\tLAG BYTES\tLAG S")
	for _, cl := range sts {
		for _, m := range cl.Members {
			state, lagB, lagS := "unreachable", "-", "-"
			if m.Reachable {
				state = "up"
				if m.Replication != "" {
					state = m.Replication
				} else if m.InRecovery != nil && *m.InRecovery {
					state = "not streaming"
				}
			}
			if m.LagBytes != nil {
				lagB = fmt.Sprint(*m.LagBytes)
			}
			if m.LagSeconds != nil {
				lagS = fmt.Sprintf("%.3f", *m.LagSeconds)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s:%d\t%s\t%s\t%s\t%s\n", cl.Name, m.Name, m.Role, m.Host, m.Port, m.Zone, state, lagB, lagS)
		}
	}
	return w.Flush()
}
