package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"tenantry/control"
	"tenantry/registry"
)

func init() { register(newRouteCmd) }

func newRouteCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "route", Short: "Which stacks serve which tenants at the gateway (weights)"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List routes (tenant \"default\" serves tenants without a route of their own)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			rs, v, err := c.Routes(cmd.Context())
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]any{"routes": rs, "version": v})
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TENANT\tBACKENDS")
			for _, r := range rs {
				name := r.Tenant
				if name == registry.DefaultRoute {
					name = control.DefaultRouteName
				}
				var bs []string
				for _, b := range r.Backends {
					bs = append(bs, fmt.Sprintf("%s=%d", b.Stack, b.Weight))
				}
				fmt.Fprintf(w, "%s\t%s\n", name, strings.Join(bs, " "))
			}
			return w.Flush()
		},
	}
	set := &cobra.Command{
		Use:   "set TENANT|default STACK=WEIGHT [STACK=WEIGHT ...]",
		Short: "Route a tenant (or the default route) to weighted stacks; a snapshot swap at the gateway",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var backends []registry.Backend
			for _, arg := range args[1:] {
				stack, w, ok := strings.Cut(arg, "=")
				if !ok {
					w = "100"
				}
				weight, err := strconv.Atoi(w)
				if err != nil || weight < 0 {
					return usageErr("weight of %q must be a non-negative integer", arg)
				}
				backends = append(backends, registry.Backend{Stack: stack, Weight: weight})
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.SetRoute(cmd.Context(), args[0], backends); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "route %s -> %s\n", args[0], strings.Join(args[1:], " "))
			return nil
		},
	}
	var force bool
	del := &cobra.Command{
		Use:   "delete TENANT|default [--force]",
		Short: "Remove a tenant's own route (it is served by the default route again); the default route only with --force",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteRoute(cmd.Context(), args[0], force); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "route %s deleted\n", args[0])
			return nil
		},
	}
	del.Flags().BoolVar(&force, "force", false, "delete the default route although tenants are served by it (they answer 503)")
	cmd.AddCommand(list, set, del)
	return cmd
}
