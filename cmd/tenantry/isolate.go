package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tenantry/control"
	"tenantry/isolate"
	"tenantry/rollout"
	"tenantry/workflow"
)

func init() { register(newIsolateCmd) }

// operator names who runs a command, for the records of forced runs.
func operator() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}

// newIsolateCmd is `tenantry isolate TENANT [...]` with status, cutback
// and complete.
func newIsolateCmd(a *app) *cobra.Command {
	var req isolate.Request
	var standbys int
	var hypercare time.Duration
	var dryRun, follow bool
	cmd := &cobra.Command{
		Use:   "isolate TENANT [--cluster-name N] [--standbys 1] [--window HH:MM-HH:MM|auto] [--hypercare 72h] [--auto-cutback] [--until PHASE] [--force --reason R] [--dry-run] [--follow]",
		Short: "Move a tenant to its own environment (dedicated stack and cluster with a standby) as one guarded, reversible plan",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Tenant = args[0]
			if cmd.Flags().Changed("standbys") {
				req.Standbys = &standbys
			}
			if _, err := isolate.ParseWindow(req.Window); err != nil && req.Window != isolate.WindowAuto {
				return usageErr("--window: %v", err)
			}
			if req.Force && req.Reason == "" {
				return usageErr("--force needs --reason: it is recorded with who forced")
			}
			req.Hypercare = rollout.Duration(hypercare)
			req.By = operator()
			c, err := a.client()
			if err != nil {
				return err
			}
			if dryRun {
				p, err := c.PlanIsolation(cmd.Context(), req)
				if err != nil {
					return err
				}
				if a.output == "json" {
					return a.printJSON(p)
				}
				printPlan(a.stdout, p)
				return nil
			}
			in, err := c.StartIsolation(cmd.Context(), req)
			if err != nil {
				return err
			}
			if follow {
				return a.followIsolation(cmd.Context(), c, in.Tenant)
			}
			return a.showIsolation(in, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.ClusterName, "cluster-name", "", "the dedicated cluster (default TENANT-db)")
	f.StringVar(&req.Alias, "alias", "", "the alias on it (default TENANT-ded)")
	f.StringVar(&req.Stack, "stack", "", "the dedicated stack (default TENANT-app)")
	f.StringVar(&req.Version, "version", "", "the dedicated stack's version (default: that of the stack serving the tenant)")
	f.IntVar(&req.Instances, "instances", 0, "instances of the dedicated stack (default 1)")
	f.IntVar(&standbys, "standbys", 1, "streaming standbys of the dedicated cluster")
	f.StringVar(&req.Window, "window", "", "promote only inside this daily window, HH:MM-HH:MM UTC, or auto: the tenant's quietest hour at the gateways over 7 days (default any time)")
	f.DurationVar(&hypercare, "hypercare", 0, "how long cutback stays possible after the promotion (default 72h)")
	f.BoolVar(&req.Force, "force", false, "promote outside the window; in production, go ahead without a sandbox record")
	f.StringVar(&req.Reason, "reason", "", "why --force (recorded in the events with who)")
	f.BoolVar(&req.AutoCutback, "auto-cutback", false, "cut back by itself after 3 failing hypercare verdicts in a row (dedicated stack's 5xx and p99, the link back)")
	f.StringVar(&req.Until, "until", "", "stop after this phase (preflight ... standby) until `tenantry isolate resume TENANT`: run the phases one at a time")
	f.Float64Var(&req.SpaceFactor, "space-factor", 0, "free disk preflight wants per member of the dedicated cluster, as a multiple of the tenant's size, plus 64 MiB (default 3)")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&follow, "follow", false, "follow the isolation until it waits in hypercare or ends")

	status := &cobra.Command{
		Use:   "status TENANT [--follow]",
		Short: "Show the tenant's isolation: phases with state and durations, what it waits for",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if follow {
				return a.followIsolation(cmd.Context(), c, args[0])
			}
			return a.showIsolation(c.Isolation(cmd.Context(), args[0]))
		},
	}
	status.Flags().BoolVar(&follow, "follow", false, "refresh until the isolation waits in hypercare or ends")
	command := func(name, short string) *cobra.Command {
		return &cobra.Command{
			Use:   name + " TENANT",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.client()
				if err != nil {
					return err
				}
				if _, err := c.IsolationCommand(cmd.Context(), args[0], name); err != nil {
					return err
				}
				return a.followIsolation(cmd.Context(), c, args[0])
			},
		}
	}
	var until string
	resume := &cobra.Command{
		Use:   "resume TENANT [--until PHASE]",
		Short: "Go on with an isolation stopped by --until, up to and including --until's phase (default: to the end)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			in, err := c.ResumeIsolation(cmd.Context(), args[0], until)
			if err != nil {
				return err
			}
			// Until the runner takes the resume, the isolation still shows
			// held where it was.
			for held := in.Data.HeldBefore; in.Data.HeldBefore == held && in.Status == string(workflow.StatusRunning); {
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(200 * time.Millisecond):
				}
				if in, err = c.Isolation(cmd.Context(), args[0]); err != nil {
					return err
				}
			}
			return a.followIsolation(cmd.Context(), c, args[0])
		},
	}
	resume.Flags().StringVar(&until, "until", "", "stop again after this phase")
	cmd.AddCommand(status, resume,
		command(isolate.SignalCutback, "Take the tenant's data (through the link back) and then its traffic back, nothing lost"),
		command(isolate.SignalComplete, "End hypercare now: purge the old copy, sever the link back, retire the rollout"))
	return cmd
}

// newEnvCmd is `tenantry env show|set sandbox|production`.
func newEnvCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "env", Short: "Mark this environment sandbox or production (production isolations need a sandbox record)"}
	set := &cobra.Command{
		Use:   "set sandbox|production",
		Short: "Mark the environment (recorded in the events)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != isolate.EnvSandbox && args[0] != isolate.EnvProduction {
				return usageErr("env set: want sandbox or production, not %q", args[0])
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.SetEnv(cmd.Context(), args[0], operator()); err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]string{"env": args[0]})
			}
			fmt.Fprintf(a.stdout, "environment marked %s\n", args[0])
			return nil
		},
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the environment's mark",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			env, err := c.Env(cmd.Context())
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]string{"env": env})
			}
			if env == "" {
				env = "unmarked"
			}
			fmt.Fprintln(a.stdout, env)
			return nil
		},
	}
	cmd.AddCommand(set, show)
	return cmd
}

func init() { register(newEnvCmd) }

func (a *app) showIsolation(in *isolate.Info, err error) error {
	if err != nil {
		return err
	}
	if a.output == "json" {
		return a.printJSON(in)
	}
	printIsolation(a.stdout, in)
	return nil
}

// followIsolation prints each change of phase until the isolation waits in
// hypercare (or for the window) or ends, then the whole status.
func (a *app) followIsolation(ctx context.Context, c *control.Client, tenant string) error {
	var last string
	for {
		in, err := c.Isolation(ctx, tenant)
		if err != nil {
			return err
		}
		d := in.Data
		line := fmt.Sprintf("%s %s", d.Current, d.PhaseState())
		if line != last && a.output != "json" {
			fmt.Fprintf(a.stderr, "%s  %-10s %-8s %s\n", time.Now().UTC().Format("15:04:05"), d.Current, d.PhaseState(), d.CurrentDetail())
			last = line
		}
		if in.Status != string(workflow.StatusRunning) || d.Current == isolate.PhaseHypercare || d.HeldBefore != "" ||
			d.WaitingFor != "" && d.Current == isolate.PhasePromote {
			return a.showIsolation(in, nil)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func printPlan(w io.Writer, p *isolate.Plan) {
	fmt.Fprintf(w, "isolation plan for %s (environment %s)\n  gate: %s\n", p.Tenant, orUnmarked(p.Env), p.Gate)
	if p.WindowChoice != "" {
		fmt.Fprintf(w, "  window: %s\n", p.WindowChoice)
	}
	for i, s := range p.Steps {
		fmt.Fprintf(w, "%2d. %s\n", i+1, s.Phase)
		for _, c := range s.Creates {
			fmt.Fprintf(w, "      creates: %s\n", c)
		}
		for _, c := range s.Checks {
			fmt.Fprintf(w, "      checks:  %s\n", c)
		}
	}
}

func orUnmarked(env string) string {
	if env == "" {
		return "unmarked"
	}
	return env
}

func printIsolation(w io.Writer, in *isolate.Info) {
	d := in.Data
	r := d.Request
	fmt.Fprintf(w, "isolation %s of %s: %s", in.ID, in.Tenant, in.Status)
	if d.Outcome != "" {
		fmt.Fprintf(w, " (%s)", d.Outcome)
	}
	fmt.Fprintf(w, "\n  %s/%s -> cluster %s alias %s, stack %s; environment %s\n", d.SourceStack, d.SourceAlias, r.ClusterName, r.Alias, r.Stack, orUnmarked(d.Env))
	if d.Override != nil {
		fmt.Fprintf(w, "  forced by %s: %s\n", d.Override.By, d.Override.Reason)
	}
	if d.WindowChoice != "" {
		fmt.Fprintf(w, "  window %s: %s\n", r.Window, d.WindowChoice)
	}
	if d.Twin != "" {
		fmt.Fprintf(w, "  gate passed by the sandbox isolation of %s, its sandbox twin\n", d.Twin)
	}
	if d.Capacity != nil {
		fmt.Fprintf(w, "  capacity: %s\n", d.Capacity)
	}
	if d.Baseline != nil {
		fmt.Fprintf(w, "  latency baseline: %s\n", d.Baseline)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PHASE\tSTATE\tSECONDS\tDETAIL")
	for _, p := range d.Phases {
		secs := ""
		switch {
		case !p.EndedAt.IsZero():
			secs = fmt.Sprintf("%.1f", p.Seconds)
		case !p.StartedAt.IsZero():
			secs = fmt.Sprintf("%.1f…", time.Since(p.StartedAt).Seconds())
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", p.Name, p.State, secs, p.Detail)
	}
	_ = tw.Flush()
	if n := len(d.Verdicts); n > 0 {
		fmt.Fprintf(w, "  hypercare verdicts: %d, %d failing in a row\n", n, d.FailingVerdicts)
		for _, v := range d.Verdicts[max(0, n-5):] {
			verdict := "pass"
			switch {
			case !v.Pass:
				verdict = "FAIL " + strings.Join(v.Reasons, "; ")
			case v.NoData:
				verdict = "no data"
			}
			fmt.Fprintf(w, "    %s  %d requests, %d 5xx, p99 %.1f ms, lag %d B: %s\n", v.At.Format("15:04:05"), v.Requests, v.Errors, v.P99MS, v.LagBytes, verdict)
		}
	}
	if d.PauseMS > 0 {
		fmt.Fprintf(w, "  promotion pause: %.1f ms\n", d.PauseMS)
	}
	if d.WaitingFor != "" && in.Status == string(workflow.StatusRunning) {
		fmt.Fprintf(w, "  waiting for: %s\n", d.WaitingFor)
	}
	if d.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", d.Reason)
	}
	if in.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", in.Error)
	}
	if in.Status == string(workflow.StatusRunning) && d.Current == isolate.PhaseHypercare {
		fmt.Fprintf(w, "  next: tenantry isolate complete %s, or tenantry isolate cutback %s\n", in.Tenant, in.Tenant)
	}
}
