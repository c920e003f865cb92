package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"tenantry/control"
	"tenantry/registry"
)

func init() {
	register(newClusterCmd)
	register(newAliasCmd)
	register(newStatusCmd)
}

func newClusterCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "PostgreSQL clusters and their members"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List clusters with their members, roles, zones and each standby's replay lag",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cs, err := c.Clusters(cmd.Context())
			if err != nil {
				return err
			}
			sts := make([]*control.ClusterStatus, 0, len(cs))
			for _, cl := range cs {
				st, err := c.ClusterStatus(cmd.Context(), cl.Name)
				if err != nil {
					return err
				}
				sts = append(sts, st)
			}
			return a.printClusters(sts)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show CLUSTER",
		Short: "Show a cluster's members with their probes and each standby's replay lag",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.ClusterStatus(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(st)
			}
			return a.printClusters([]*control.ClusterStatus{st})
		},
	})
	addHACmds(a, cmd)
	var (
		standbys int
		sync     bool
	)
	create := &cobra.Command{
		Use:   "create NAME [--standbys N] [--sync]",
		Short: "Create a new cluster (local mode) with N streaming standbys",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cl, err := c.CreateCluster(cmd.Context(), control.CreateClusterRequest{Name: args[0], Standbys: standbys, Sync: sync})
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(cl)
			}
			for _, m := range cl.Members {
				fmt.Fprintf(a.stdout, "cluster %s member %s %s at %s:%d\n", cl.Name, m.Name, m.Role, m.Host, m.Port)
			}
			return nil
		},
	}
	create.Flags().IntVar(&standbys, "standbys", 1, "number of streaming standbys")
	create.Flags().BoolVar(&sync, "sync", false, "synchronous replication: a commit waits for one standby (see cluster set-sync)")
	cmd.AddCommand(create, newClusterRegisterCmd(a))
	return cmd
}

func newAliasCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "alias", Short: "Database aliases (cluster + database)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List aliases",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			as, err := c.Aliases(cmd.Context())
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]any{"aliases": as})
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ALIAS\tCLUSTER\tDATABASE\tSTANDBYS")
			for _, al := range as {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", al.Name, al.Cluster, al.Database, al.Standbys)
			}
			return w.Flush()
		},
	})
	var (
		cluster, database string
		standbys          int
	)
	create := &cobra.Command{
		Use:   "create ALIAS --cluster CLUSTER [--database DB] [--standbys N]",
		Short: "Create an alias: the database is created and prepared if missing",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cluster == "" {
				return usageErr("--cluster is required")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			al, err := c.CreateAlias(cmd.Context(), registry.Alias{Name: args[0], Cluster: cluster, Database: database, Standbys: standbys})
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(al)
			}
			fmt.Fprintf(a.stdout, "alias %s -> cluster %s, database %s\n", al.Name, al.Cluster, al.Database)
			return nil
		},
	}
	create.Flags().StringVar(&cluster, "cluster", "", "cluster the alias points at")
	create.Flags().StringVar(&database, "database", "", "database name (default: the alias name)")
	create.Flags().IntVar(&standbys, "standbys", 0, "streaming standbys the alias's cluster should have: a move completing on the alias adds the missing ones")
	cmd.AddCommand(create)
	return cmd
}

func newStatusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the platform's registry version, counts and routers (expiring dead ones)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(st)
			}
			fmt.Fprintf(a.stdout, "registry version %d: %s, %s, %s, %s, %s\n", st.Version, things(st.Clusters, "cluster"),
				things(st.Aliases, "alias"), things(st.Tenants, "tenant"), things(st.Stacks, "stack"), things(len(st.Routers), "router"))
			for _, r := range st.Routers {
				fmt.Fprintf(a.stdout, "  router %s  last seen %.1f s ago (%s)\n", r.ID, r.LastSeenSeconds, r.Heartbeat.Local().Format("15:04:05"))
			}
			if len(st.Expired) > 0 {
				fmt.Fprintf(a.stdout, "  expired (silent too long, taken for dead): %s\n", strings.Join(st.Expired, ", "))
			}
			return nil
		},
	}
}

// things is n of a thing in plain English: "1 cluster", "2 aliases".
func things(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	if strings.HasSuffix(thing, "s") {
		return fmt.Sprintf("%d %ses", n, thing)
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
