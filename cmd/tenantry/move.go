package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"tenantry/control"
	"tenantry/logrepl"
	"tenantry/move"
	"tenantry/workflow"
)

func init() { register(newMoveCmd) }

func newMoveCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "move", Short: "Move a tenant between aliases online: start, status, promote, cutback, complete, cancel, list"}
	var to string
	var auto, force, follow, followStatus bool
	start := &cobra.Command{
		Use:   "start TENANT --to ALIAS [--auto]",
		Short: "Start moving a tenant: backup, replicate, verify; then wait for promote (or promote at once with --auto)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usageErr("--to is required")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			mv, err := c.StartMove(cmd.Context(), move.StartRequest{Tenant: args[0], To: to, Auto: auto, Force: force})
			if err != nil {
				return err
			}
			if a.output == "json" && !follow {
				return a.printJSON(mv)
			}
			fmt.Fprintf(a.stderr, "move %s started: %s from %s to %s\n", mv.ID, mv.Data.Tenant, mv.Data.Source, mv.Data.Target)
			if !follow {
				fmt.Fprintf(a.stdout, "%s\n", mv.ID)
				return nil
			}
			return a.followMove(cmd.Context(), c, mv.ID)
		},
	}
	start.Flags().StringVar(&to, "to", "", "alias to move the tenant to")
	start.Flags().BoolVar(&auto, "auto", false, "promote as soon as the copy verifies")
	start.Flags().BoolVar(&force, "force", false, "promote outside the maintenance window")
	start.Flags().BoolVar(&follow, "follow", true, "show live progress until the move is ready or promoted")

	status := &cobra.Command{
		Use:   "status MOVE",
		Short: "Show a move: copy per table, lag, verify, pauses; --follow shows live progress bars",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if followStatus {
				return a.followMove(cmd.Context(), c, args[0])
			}
			mv, err := c.Move(cmd.Context(), args[0], true)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(mv)
			}
			printMove(a.stdout, mv)
			return nil
		},
	}
	status.Flags().BoolVar(&followStatus, "follow", false, "show live progress until the move is ready, promoted or ended")

	command := func(name, short string) *cobra.Command {
		return &cobra.Command{
			Use:   name + " MOVE",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.client()
				if err != nil {
					return err
				}
				mv, err := c.MoveCommand(cmd.Context(), args[0], name)
				if err != nil {
					return err
				}
				if a.output == "json" {
					return a.printJSON(mv)
				}
				printMove(a.stdout, mv)
				return nil
			},
		}
	}
	var tenant string
	list := &cobra.Command{
		Use:   "list",
		Short: "List moves, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ms, err := c.Moves(cmd.Context(), tenant)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]any{"moves": ms})
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "MOVE\tTENANT\tFROM\tTO\tON\tPHASE\tSTATUS\tPAUSES (ms)")
			for _, m := range ms {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Data.Tenant, m.Data.Source, m.Data.Target,
					m.Data.On, m.Data.Phase, m.Status, pauses(m.Data.Flips))
			}
			return w.Flush()
		},
	}
	list.Flags().StringVar(&tenant, "tenant", "", "only moves of this tenant")
	cmd.AddCommand(start, status,
		command(move.SignalPromote, "Promote: pause the tenant, fence the source, flip it to the target (rolls back on any failure)"),
		command(move.SignalCutback, "Cut back: flip the tenant back to the source, losing nothing"),
		command(move.SignalComplete, "Complete: drop the replication links and purge the other side's copy"),
		command(move.SignalCancel, "Cancel before promotion (or after a cutback): drop the links and the target's copy"),
		list)
	return cmd
}

func pauses(fs []move.FlipRecord) string {
	var p []string
	for _, f := range fs {
		p = append(p, fmt.Sprintf("%s %.0f", f.Kind, f.PauseMS))
	}
	return strings.Join(p, ", ")
}

func printMove(w io.Writer, m *move.Info) {
	d := m.Data
	fmt.Fprintf(w, "move %s: tenant %s, %s -> %s, on %s\n", m.ID, d.Tenant, d.Source, d.Target, d.On)
	fmt.Fprintf(w, "  status %s, step %s, phase %s\n", m.Status, m.Step, d.Phase)
	if m.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", m.Error)
	}
	if d.LastError != "" {
		fmt.Fprintf(w, "  last error: %s\n", d.LastError)
	}
	for _, t := range d.Copy {
		fmt.Fprintf(w, "  copy %-22s %-2s %10d / %d rows\n", t.Table, t.State, t.Rows, d.SourceRows[t.Table])
	}
	if d.CopySeconds > 0 {
		fmt.Fprintf(w, "  copy took %.2f s\n", d.CopySeconds)
	}
	fmt.Fprintf(w, "  lag %d bytes\n", d.LagBytes)
	if v := d.Verify; v != nil {
		fmt.Fprintf(w, "  verify: %d rows in %d chunks, %.0f rows/s, ok=%v\n", v.Rows, v.Chunks, v.RowsPerSec, v.OK)
	}
	for _, f := range d.Flips {
		fmt.Fprintf(w, "  %s %s -> %s at %s: pause %.1f ms %v\n", f.Kind, f.From, f.To, f.At.Format(time.RFC3339), f.PauseMS, f.Phases)
	}
	if !d.HypercareEnds.IsZero() && m.Status == workflow.StatusRunning {
		fmt.Fprintf(w, "  hypercare until %s\n", d.HypercareEnds.Format(time.RFC3339))
	}
	if len(m.Events) > 0 {
		fmt.Fprintln(w, "  events:")
		n := len(m.Events)
		for _, e := range m.Events[max(0, n-12):] {
			fmt.Fprintf(w, "    %s %-10s %-9s %s\n", e.At.Format("15:04:05.000"), e.Step, e.Kind, e.Message)
		}
	}
}

// followMove shows live progress bars (copy per table, verify) until the
// move waits for the operator, is in hypercare, or ends.
func (a *app) followMove(ctx context.Context, c *control.Client, id string) error {
	var out io.Writer = a.stderr
	if a.output == "json" {
		out = io.Discard
	}
	p := mpb.NewWithContext(ctx, mpb.WithOutput(out), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
	bars := map[string]*mpb.Bar{}
	bar := func(name string, total int64) *mpb.Bar {
		b, ok := bars[name]
		if !ok {
			b = p.AddBar(max(total, 1), mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-28s", name))),
				mpb.AppendDecorators(decor.CountersNoUnit("%d / %d rows"), decor.Name("  "), decor.AverageSpeed(0, "%.0f rows/s")))
			bars[name] = b
		}
		return b
	}
	var last *move.Info
	defer func() {
		for _, b := range bars {
			if !b.Completed() {
				b.Abort(false)
			}
		}
		p.Wait()
		if last != nil {
			if a.output == "json" {
				_ = a.printJSON(last)
			} else {
				printMove(a.stdout, last)
			}
		}
	}()
	for {
		m, err := c.Move(ctx, id, false)
		if err != nil {
			return err
		}
		last = m
		d := m.Data
		tables := make([]logrepl.TableSync, len(d.Copy))
		copy(tables, d.Copy)
		sort.Slice(tables, func(i, j int) bool { return tables[i].Table < tables[j].Table })
		for _, t := range tables {
			total := d.SourceRows[t.Table]
			b := bar("copy "+t.Table, total)
			b.SetTotal(max(total, t.Rows, 1), false)
			b.SetCurrent(t.Rows)
			if t.State == logrepl.SyncReady {
				if t.Rows == 0 {
					b.SetCurrent(1) // an empty table is done too
				}
				b.SetTotal(-1, true)
			}
		}
		if v := d.Verify; v != nil {
			var total int64
			for _, n := range d.SourceRows {
				total += n
			}
			b := bar("verify", total)
			b.SetCurrent(v.Rows)
			b.SetTotal(-1, true)
		}
		done := m.Status != workflow.StatusRunning ||
			(m.Step == "ready" && d.Phase == move.PhaseReady) || (m.Step == "hypercare" && d.Phase == move.PhaseHypercare)
		if done {
			if m.Status == workflow.StatusFailed || m.Status == workflow.StatusRolledBack {
				return fmt.Errorf("move %s %s: %s", id, m.Status, m.Error)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
