package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

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
			switch {
			case !nt.Ready && len(nt.PendingRouters) > 0:
				fmt.Fprintf(a.stderr, "note: routers %s had not yet seen the tenant; they look it up on its first request\n",
					strings.Join(nt.PendingRouters, ", "))
			case !nt.Ready:
				fmt.Fprintln(a.stderr, "note: could not confirm that every router has seen the tenant; routers look it up on its first request")
			}
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
			fmt.Fprintf(a.stdout, "tenant:   %s\nalias:    %s\nstate:    %s\nepoch:    %d\ncluster:  %s\ndatabase: %s\nprimary:  %s\nlimits:   rate %s, concurrency %s\n",
				t.ID, t.Alias, t.State, t.Epoch, t.Cluster, t.Database, t.Primary,
				limitText(t.Limits.Rate, "/s"), limitText(t.Limits.Concurrency, " in flight"))
			return nil
		},
	}
	cmd.AddCommand(create, list, show, newTenantSetCmd(a), newTenantDeleteCmd(a), newTenantKeyCmd(a), newTenantLimitsCmd(a))
	return cmd
}

// newTenantSetCmd is `tenantry tenant set TENANT --sandbox-twin OTHER`.
func newTenantSetCmd(a *app) *cobra.Command {
	var twin string
	cmd := &cobra.Command{
		Use:   "set TENANT --sandbox-twin OTHER",
		Short: "Mark OTHER as TENANT's sandbox twin: in production, a succeeded sandbox isolation of OTHER passes TENANT's isolation gate (\"\" clears it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("sandbox-twin") {
				return usageErr("tenant set: nothing to set (--sandbox-twin OTHER)")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.SetSandboxTwin(cmd.Context(), args[0], twin, operator())
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(out)
			}
			if out.Twin == "" {
				fmt.Fprintf(a.stdout, "tenant %s: no sandbox twin\n", out.Tenant)
				return nil
			}
			fmt.Fprintf(a.stdout, "tenant %s: sandbox twin %s (its succeeded sandbox isolation passes %s's production gate)\n", out.Tenant, out.Twin, out.Tenant)
			return nil
		},
	}
	cmd.Flags().StringVar(&twin, "sandbox-twin", "", "the sandbox tenant that rehearses this tenant's isolation")
	return cmd
}

func newTenantDeleteCmd(a *app) *cobra.Command {
	var yes bool
	del := &cobra.Command{
		Use:   "delete TENANT --yes",
		Short: "Delete a tenant: revoke its keys, purge its rows, drop its role, remove its placement and route (refused while a move runs)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usageErr("tenant delete purges every row of %s: confirm with --yes", args[0])
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			d, err := c.DeleteTenant(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(d)
			}
			var rows int64
			for _, n := range d.Rows {
				rows += n
			}
			fmt.Fprintf(a.stdout, "tenant %s deleted: %d keys revoked, %d rows purged from %s (alias %s), role dropped\n",
				d.Tenant, len(d.KeysRevoked), rows, d.Database, d.Alias)
			return nil
		},
	}
	del.Flags().BoolVar(&yes, "yes", false, "confirm the deletion")
	return del
}

func newTenantKeyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Create, list and revoke a tenant's API keys (several at once, for rotation)"}
	create := &cobra.Command{
		Use:   "create TENANT",
		Short: "Add an API key to a tenant (shown once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			k, err := c.CreateAPIKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(k)
			}
			fmt.Fprintf(a.stdout, "key %s created for tenant %s\napi key (shown once): %s\n", k.KeyID, k.Tenant, k.APIKey)
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list TENANT",
		Short: "List a tenant's API keys, revoked ones included",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			keys, err := c.APIKeys(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]any{"keys": keys})
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "KEY\tCREATED\tREVOKED")
			for _, k := range keys {
				revoked := "-"
				if k.RevokedAt != nil {
					revoked = k.RevokedAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", k.ID, k.CreatedAt.UTC().Format(time.RFC3339), revoked)
			}
			return w.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke TENANT KEY_ID",
		Short: "Revoke an API key: gateways answer it 401 from their next registry snapshot",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.RevokeAPIKey(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]string{"tenant": args[0], "revoked": args[1]})
			}
			fmt.Fprintf(a.stdout, "key %s of tenant %s revoked\n", args[1], args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
