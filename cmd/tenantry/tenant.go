package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func init() { register(newTenantCmd) }

func newTenantCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Create, list and show tenants"}
	var alias string
	create := &cobra.Command{
		Use:   "create TENANT --alias ALIAS",
		Short: "Create a tenant on an alias: its database role, placement and API key (shown once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			nt, err := c.CreateTenant(cmd.Context(), args[0], alias)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(nt)
			}
			fmt.Fprintf(a.stdout, "tenant %s created on alias %s (epoch %d)\napi key (shown once): %s\n",
				nt.Tenant.ID, nt.Tenant.Alias, nt.Tenant.Epoch, nt.APIKey)
			return nil
		},
	}
	create.Flags().StringVar(&alias, "alias", "pool-1", "alias to place the tenant on")
	list := &cobra.Command{
		Use:   "list",
		Short: "List tenants and their placements",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ts, err := c.Tenants(cmd.Context())
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]any{"tenants": ts})
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TENANT\tALIAS\tSTATE\tEPOCH")
			for _, t := range ts {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", t.ID, t.Alias, t.State, t.Epoch)
			}
			return w.Flush()
		},
	}
	show := &cobra.Command{
		Use:   "show TENANT",
		Short: "Show a tenant and where it is served from",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.Tenant(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(t)
			}
			fmt.Fprintf(a.stdout, "tenant:   %s\nalias:    %s\nstate:    %s\nepoch:    %d\ncluster:  %s\ndatabase: %s\nprimary:  %s\n",
				t.ID, t.Alias, t.State, t.Epoch, t.Cluster, t.Database, t.Primary)
			return nil
		},
	}
	cmd.AddCommand(create, list, show)
	return cmd
}
