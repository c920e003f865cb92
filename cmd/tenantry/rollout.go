package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tenantry/control"
	"tenantry/jsonapi"
	"tenantry/rollout"
	"tenantry/workflow"
)

func init() { register(newRolloutCmd) }

// errSmokeFailed makes `stack smoke` exit 1 when a check failed.
var errSmokeFailed = errors.New("smoke suite failed")

// newRolloutCmd is `tenantry rollout start|status|list|promote|abort|cutback|retire`.
func newRolloutCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "rollout", Short: "Blue/green rollouts: move a route's traffic to a new stack, judged, with automatic rollback"}
	var req rollout.StartRequest
	var steps, checksFile string
	var interval, grace, minDelta, hold time.Duration
	var wait bool
	start := &cobra.Command{
		Use:   "start --route TENANT|default --to STACK [--steps 10,50,100] [--interval 10s] [--failure-limit 3] [--max-error-rate 0.01] [--max-p99-ratio 1.5] [--hold 72h]",
		Short: "Start a rollout: pre-check and smoke through the preview, shift in steps, judge every interval, roll back on failure",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Route == "" || req.To == "" {
				return usageErr("--route and --to are required")
			}
			var err error
			if steps != "" {
				for _, s := range strings.Split(steps, ",") {
					w, err := strconv.Atoi(strings.TrimSpace(s))
					if err != nil {
						return usageErr("--steps: %q is not a weight", s)
					}
					req.Steps = append(req.Steps, w)
				}
			}
			if req.Checks, err = readChecks(checksFile); err != nil {
				return err
			}
			req.Interval, req.Grace, req.MinP99Delta, req.Hold = rollout.Duration(interval), rollout.Duration(grace), rollout.Duration(minDelta), rollout.Duration(hold)
			c, err := a.client()
			if err != nil {
				return err
			}
			in, err := c.StartRollout(cmd.Context(), req)
			if err != nil {
				return err
			}
			if wait {
				if in, err = waitRollout(cmd, c, in.ID); err != nil {
					return err
				}
			}
			return a.showRollout(in, nil)
		},
	}
	f := start.Flags()
	f.StringVar(&req.Route, "route", "", "the route: a tenant id, or default")
	f.StringVar(&req.To, "to", "", "the new stack")
	f.StringVar(&req.Tenant, "tenant", "", "tenant the smoke suite and probes act as (default route only; default: the first it serves)")
	f.StringVar(&steps, "steps", "", "the new stack's weights in percent, e.g. 10,50,100 (default 100: all at once)")
	f.DurationVar(&interval, "interval", 0, "how often the new stack is judged (default 10s)")
	f.DurationVar(&grace, "grace", 0, "how long each step is judged (default 6 × interval)")
	f.IntVar(&req.FailureLimit, "failure-limit", 0, "consecutive failing intervals that roll back (default 3)")
	f.Float64Var(&req.MaxErrorRate, "max-error-rate", 0, "largest share of 5xx that passes (default 0.01)")
	f.Float64Var(&req.MaxP99Ratio, "max-p99-ratio", 0, "largest new p99 / old p99 that passes (default 1.5)")
	f.DurationVar(&minDelta, "min-p99-delta", 0, "a p99 within this of the old one passes (default 25ms)")
	f.IntVar(&req.MinRequests, "min-requests", 0, "fewest requests an interval is judged on; probes make up the rest (default 20)")
	f.DurationVar(&hold, "hold", 0, "how long the old stack is kept after success (default 72h)")
	f.StringVar(&checksFile, "checks", "", checksUsage)
	f.BoolVar(&wait, "wait", false, "wait until the rollout holds the old stack or ends")

	var events bool
	status := &cobra.Command{
		Use:   "status ROLLOUT",
		Short: "Show a rollout: live weights, each interval's verdict with its figures, the timeline",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.showRollout(c.Rollout(cmd.Context(), args[0], events))
		},
	}
	status.Flags().BoolVar(&events, "events", false, "include the workflow's event log (json)")

	var route string
	list := &cobra.Command{
		Use:   "list [--route TENANT|default]",
		Short: "List rollouts, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			rs, err := c.Rollouts(cmd.Context(), route)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]any{"rollouts": rs})
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tROUTE\tFROM\tTO\tSTATUS\tPHASE\tWEIGHT\tCREATED")
			for _, r := range rs {
				d := r.Data
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d%%\t%s\n", r.ID, d.Route, d.From, d.To, r.Status, d.Phase, d.Weight, r.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&route, "route", "", "only this route's rollouts")

	command := func(name, short string) *cobra.Command {
		return &cobra.Command{
			Use:   name + " ROLLOUT",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.client()
				if err != nil {
					return err
				}
				return a.showRollout(c.RolloutCommand(cmd.Context(), args[0], name))
			},
		}
	}
	cmd.AddCommand(start, status, list,
		command(rollout.SignalPromote, "Skip the remaining steps: all traffic to the new stack, then hold"),
		command(rollout.SignalAbort, "Roll back now: all traffic to the old stack"),
		command(rollout.SignalCutback, "During the hold: all traffic back to the old stack"),
		command(rollout.SignalRetire, "During the hold: stop the old stack now (unless another route uses it)"))
	return cmd
}

// showRollout prints a rollout (or returns err).
func (a *app) showRollout(in *rollout.Info, err error) error {
	if err != nil {
		return err
	}
	if a.output == "json" {
		return a.printJSON(in)
	}
	printRollout(a.stdout, in)
	return nil
}

// waitRollout polls until the rollout holds the old stack or ends.
func waitRollout(cmd *cobra.Command, c *control.Client, id string) (*rollout.Info, error) {
	for {
		in, err := c.Rollout(cmd.Context(), id, false)
		if err != nil {
			return nil, err
		}
		if in.Status != workflow.StatusRunning || in.Data.Phase == rollout.PhaseHolding {
			return in, nil
		}
		select {
		case <-cmd.Context().Done():
			return in, cmd.Context().Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func printRollout(w io.Writer, in *rollout.Info) {
	d := in.Data
	fmt.Fprintf(w, "rollout %s: route %s from %s to %s\n", in.ID, d.Route, d.From, d.To)
	fmt.Fprintf(w, "  status %s, phase %s, step %d of %v\n", in.Status, d.Phase, d.Step+1, d.Params.Steps)
	var ws []string
	for _, b := range in.Weights {
		ws = append(ws, fmt.Sprintf("%s=%d", b.Stack, b.Weight))
	}
	fmt.Fprintf(w, "  weights now: %s\n", strings.Join(ws, " "))
	if d.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", d.Reason)
	}
	if !d.HoldUntil.IsZero() && in.Status == workflow.StatusRunning {
		fmt.Fprintf(w, "  old stack held until %s\n", d.HoldUntil.UTC().Format(time.RFC3339))
	}
	for _, c := range d.Smoke {
		mark := "pass"
		if !c.Pass {
			mark = "FAIL " + c.Error
		}
		fmt.Fprintf(w, "  smoke %-22s %s\n", c.Name, mark)
	}
	for _, v := range d.Intervals {
		verdict := "pass"
		if !v.Pass {
			verdict = "FAIL " + strings.Join(v.Reasons, ",")
		}
		fmt.Fprintf(w, "  %s at %3d%%: %-20s %s", v.At.Format("15:04:05"), v.Weight, verdict, v.Detail)
		if v.Probes > 0 {
			fmt.Fprintf(w, " (%d probes)", v.Probes)
		}
		fmt.Fprintln(w)
	}
	for _, e := range d.Timeline {
		fmt.Fprintf(w, "  %s %-12s %s\n", e.At.Format("15:04:05.000"), e.Event, e.Detail)
	}
}

// newStackSmokeCmd is `tenantry stack smoke STACK --tenant T`.
func newStackSmokeCmd(a *app) *cobra.Command {
	var tenant, checksFile string
	cmd := &cobra.Command{
		Use:   "smoke STACK --tenant TENANT [--checks FILE]",
		Short: "Run the smoke suite on a stack through the gateway's preview (no tenant traffic routed); exit 1 on a failed check",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tenant == "" {
				return usageErr("--tenant is required")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			checks, err := readChecks(checksFile)
			if err != nil {
				return err
			}
			res, err := c.Smoke(cmd.Context(), args[0], control.SmokeRequest{Tenant: tenant, Checks: checks})
			if err != nil {
				return err
			}
			if a.output == "json" {
				if err := a.printJSON(res); err != nil {
					return err
				}
			} else {
				for _, ch := range res.Checks {
					mark := "pass"
					if !ch.Pass {
						mark = "FAIL " + ch.Error
					}
					fmt.Fprintf(a.stdout, "%-22s %6.1fms  %s\n", ch.Name, ch.LatencyMs, mark)
				}
			}
			if !res.Pass {
				return fmt.Errorf("%w on stack %s", errSmokeFailed, res.Stack)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant the suite acts as (it creates a product, a location, stock and orders)")
	cmd.Flags().StringVar(&checksFile, "checks", "", checksUsage)
	return cmd
}

const checksUsage = `a JSON file of more smoke checks: [{"name", "method", "path", "body", "status"}]`

// readChecks reads an operator's smoke checks (strict JSON); none when
// path is empty.
func readChecks(path string) ([]rollout.HTTPCheck, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErr("--checks: %v", err)
	}
	var cs []rollout.HTTPCheck
	if err := jsonapi.Decode(b, &cs); err != nil {
		return nil, usageErr("--checks %s: %v", path, err)
	}
	if err := rollout.ValidateChecks(cs); err != nil {
		return nil, usageErr("--checks %s: %v", path, err)
	}
	return cs, nil
}
