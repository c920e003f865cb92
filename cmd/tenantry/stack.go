package main

import (
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"tenantry/registry"
	"tenantry/stack"
)

func init() { register(newStackCmd) }

// newStackCmd is `tenantry stack deploy|list|stop`, through the control
// plane API (POST /v1/stacks, GET /v1/stacks, POST /v1/stacks/{name}/stop).
func newStackCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "stack", Short: "Deploy, list and stop application stacks"}
	var spec stack.Spec
	deploy := &cobra.Command{
		Use:   "deploy NAME --instances N --version V",
		Short: "Deploy a stack of OMS instances (no traffic until a route names it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Name = args[0]
			if err := spec.Validate(); err != nil {
				return usageErr("%v", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var st registry.Stack
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/stacks", spec, &st); err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(st)
			}
			fmt.Fprintf(a.stdout, "stack %s (%s) %s with %d instances\n", st.Name, st.Version, st.Status, len(st.Instances))
			for _, in := range st.Instances {
				fmt.Fprintf(a.stdout, "  %s\n", in.URL)
			}
			return nil
		},
	}
	deploy.Flags().IntVar(&spec.Instances, "instances", 2, "number of instances")
	deploy.Flags().StringVar(&spec.Version, "version", "", "version label (required)")
	deploy.Flags().BoolVar(&spec.Production, "production", false, "mark the stack production: its instances refuse test-only faults")
	deploy.Flags().Float64Var(&spec.Faults.ErrorRate, "test-fault-error-rate", 0, "test only: share of requests the instances answer 500 (to show a rollback)")
	deploy.Flags().DurationVar(&spec.Faults.Latency, "test-fault-latency", 0, "test only: latency the instances add to every request")
	deploy.Flags().Int64Var(&spec.Faults.After, "test-fault-after", 0, "test only: requests each instance serves well before its faults begin")
	deploy.Flags().StringSliceVar(&spec.URLs, "url", nil, "an instance deployed elsewhere (repeatable; control planes without a local provider record these)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List stacks, their status and instances",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var out struct {
				Stacks []*registry.Stack `json:"stacks"`
			}
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/stacks", nil, &out); err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(out)
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "STACK\tVERSION\tSTATUS\tHEALTHY\tINSTANCES")
			for _, st := range out.Stacks {
				healthy, urls := 0, make([]string, 0, len(st.Instances))
				for _, in := range st.Instances {
					if in.Healthy {
						healthy++
					}
					urls = append(urls, in.URL)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d\t%s\n", st.Name, st.Version, st.Status, healthy, len(st.Instances), strings.Join(urls, " "))
			}
			return w.Flush()
		},
	}
	var force bool
	stop := &cobra.Command{
		Use:   "stop NAME [--force]",
		Short: "Stop a stack's instances; one that routes send traffic to only with --force",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := registry.ValidateName("stack", args[0]); err != nil {
				return usageErr("%v", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.StopStack(cmd.Context(), args[0], force); err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]string{"stack": args[0], "status": registry.StackStopped})
			}
			fmt.Fprintf(a.stdout, "stack %s stopped\n", args[0])
			return nil
		},
	}
	stop.Flags().BoolVar(&force, "force", false, "stop the stack although routes send traffic to it (their tenants' requests fail)")
	cmd.AddCommand(deploy, list, stop, newStackSmokeCmd(a))
	return cmd
}
