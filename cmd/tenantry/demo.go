package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tenantry/demo"
)

func init() { register(newDemoCmd) }

// errDemoFailed makes the exit code 1 after the report is printed.
var errDemoFailed = errors.New("demo failed: see the report")

func newDemoCmd(a *app) *cobra.Command {
	var opts demo.Options
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the platform end to end: 4 tenants under load, move the large one to a dedicated cluster, cut back, move again, check",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var progress io.Writer = a.stderr
			opts.Progress = progress
			opts.Logger = a.log
			if a.logLevel == "info" {
				opts.Logger = nil // phases are the progress; logs on request (--log-level debug)
			}
			rep, err := demo.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if a.output == "json" {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				printDemo(a.stdout, rep)
			}
			if !rep.OK {
				return errDemoFailed
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Dir, "dir", "", "data directory for the demo platform (default: a temporary directory, removed at the end)")
	f.IntVar(&opts.Orders, "orders", 200_000, "order history of the large tenant")
	f.Float64Var(&opts.Rate, "rate", 150, "load: requests per second across the tenants")
	f.IntVar(&opts.Concurrency, "concurrency", 8, "load: concurrent clients")
	f.DurationVar(&opts.Settle, "settle", 3*time.Second, "load time between the phases")
	return cmd
}

func printDemo(w io.Writer, r *demo.Report) {
	fmt.Fprintf(w, "\ntenantry demo report\n%s\n", strings.Repeat("=", 20))
	for _, p := range r.Phases {
		fmt.Fprintf(w, "  %-52s %7.2f s\n", p.Name, p.Seconds)
	}
	fmt.Fprintf(w, "\n  tenants               %s (large: %s, %d orders)\n", strings.Join(r.Tenants, ", "), r.LargeTenant, r.LargeOrders)
	fmt.Fprintf(w, "  requests              %d served, %d acknowledged writes, %d failed, %d retries\n", r.Requests, r.Acknowledged, r.FailedRequests, r.Retries)
	for code, n := range r.FailuresByCode {
		fmt.Fprintf(w, "    failed %-16s %d\n", code, n)
	}
	fmt.Fprintf(w, "  latency               p99 %.1f ms, max %.1f ms, longest stall %.1f ms\n", r.P99MS, r.MaxMS, r.LongestStallMS)
	fmt.Fprintf(w, "  copy                  %d rows in %.2f s (%.0f rows/s)\n", r.CopyRows, r.CopySeconds, r.CopyRowsPerSec)
	fmt.Fprintf(w, "  parity                ok=%v (%.0f rows/s)\n", r.ParityOK, r.VerifyRowsPerS)
	for i, f := range r.Flips {
		parity := "counted in the pause"
		if !f.Counted {
			parity = fmt.Sprintf("parity after the flip ok=%v", i < len(r.ParityAfterFlips) && r.ParityAfterFlips[i])
		}
		fmt.Fprintf(w, "  %-8s %-14s -> %-16s pause %s; %s\n", f.Kind, f.From, f.To, describePause(f), parity)
	}
	fmt.Fprintf(w, "  isolation             %.1f s to hypercare, app cutover %d failed requests, promotion pause %.1f ms, standby streaming %v\n",
		r.IsolationSeconds, r.AppCutoverFailed, r.PromotionPauseMS, r.StandbyStreaming)
	if r.TenantBaselineP99MS > 0 {
		fmt.Fprintf(w, "  latency baseline      %s's own p99 on the shared stack %.1f ms (what its dedicated stack was held to)\n", r.LargeTenant, r.TenantBaselineP99MS)
	}
	fmt.Fprintf(w, "  isolation cutback     %.1f s (data, then traffic)\n", r.CutbackSeconds)
	fmt.Fprintf(w, "  bad shared version    rolled back %v, %.1f s after its first bad interval\n", r.RolledBack, r.RollbackSeconds)
	if r.DedicatedStandby != "" {
		fmt.Fprintf(w, "  dedicated standby     %s streaming (lag %d bytes when seen)\n", r.DedicatedStandby, r.StandbyLagBytes)
	}
	fmt.Fprintf(w, "  checker               ok=%v\n", r.CheckerOK)
	for _, v := range r.Violations {
		fmt.Fprintf(w, "    %s\n", v)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error                 %s\n", r.Error)
	}
	verdict := "OK"
	if !r.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "\n  result                %s\n", verdict)
}
