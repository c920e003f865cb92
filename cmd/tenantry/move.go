package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"tenantry/control"
	"tenantry/logrepl"
	"tenantry/move"
	"tenantry/registry"
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
		Use:   "status MOVE|TENANT",
		Short: "Show a move: copy per table, lag, verify, pauses; --follow shows live progress bars",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			id, err := resolveMove(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if followStatus {
				return a.followMove(cmd.Context(), c, id)
			}
			mv, err := c.Move(cmd.Context(), id, true)
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
			Use:   name + " MOVE|TENANT",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.client()
				if err != nil {
					return err
				}
				id, err := resolveMove(cmd.Context(), c, args[0])
				if err != nil {
					return err
				}
				mv, err := c.MoveCommand(cmd.Context(), id, name)
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

// resolveMove returns the move named by arg: a move id as is, or for a
// tenant id (they never contain "_", move ids always do) the tenant's move
// in progress, or its latest move if none is.
func resolveMove(ctx context.Context, c *control.Client, arg string) (string, error) {
	if strings.Contains(arg, "_") {
		return arg, nil
	}
	if err := registry.ValidateTenantID(arg); err != nil {
		return "", usageErr("%q is neither a move id nor a tenant: %v", arg, err)
	}
	ms, err := c.Moves(ctx, arg)
	if err != nil {
		return "", err
	}
	if len(ms) == 0 {
		return "", fmt.Errorf("tenant %s has no move: %w", arg, registry.ErrNotFound)
	}
	for _, m := range ms {
		if m.Status == workflow.StatusRunning {
			return m.ID, nil
		}
	}
	return ms[0].ID, nil // newest first
}

func pauses(fs []move.FlipRecord) string {
	var p []string
	for _, f := range fs {
		p = append(p, fmt.Sprintf("%s %.0f", f.Kind, f.PauseMS))
	}
	return strings.Join(p, ", ")
}

// pauseParts are the parts of a flip's pause in the order they happen
// (move.FlipRecord.Phases).
var pauseParts = []string{"acks", "fence", "apply", "counts", "sequences", "flip"}

// describePause says how long a flip paused the tenant and what the pause
// was made of, in ms: "240 ms (acks 21 ms, fence 60 ms, ...)".
func describePause(f move.FlipRecord) string {
	var parts []string
	seen := map[string]bool{}
	for _, name := range pauseParts {
		if ms, ok := f.Phases[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %d ms", name, ms))
			seen[name] = true
		}
	}
	var other []string
	for name := range f.Phases {
		if !seen[name] {
			other = append(other, name)
		}
	}
	sort.Strings(other)
	for _, name := range other {
		parts = append(parts, fmt.Sprintf("%s %d ms", name, f.Phases[name]))
	}
	s := fmt.Sprintf("%.0f ms", f.PauseMS)
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

// copyState names a table's initial-copy state (pg_subscription_rel's
// letters).
func copyState(state string) string {
	switch state {
	case logrepl.SyncInit:
		return "waiting"
	case logrepl.SyncCopying:
		return "copying"
	case logrepl.SyncFinished, logrepl.SyncSynced:
		return "catching up"
	case logrepl.SyncReady:
		return "copied"
	}
	return "state " + state
}

// outcome is the one line that says what a move command did to which side,
// or "" when the move is still under way.
func outcome(m *move.Info) string {
	d := m.Data
	other := d.Source
	if d.On == d.Source {
		other = d.Target
	}
	switch {
	case m.Status == workflow.StatusSucceeded && d.Phase == move.PhaseDone:
		return fmt.Sprintf("completed: %s is served from %s; its copy on %s was purged (%d rows) and its role there dropped",
			d.Tenant, d.On, other, d.Purged)
	case m.Status == workflow.StatusCancelled:
		return fmt.Sprintf("cancelled: %s stays on %s; its copy on %s was purged (%d rows)", d.Tenant, d.Source, d.Target, d.Purged)
	case m.Status != workflow.StatusRunning:
		return fmt.Sprintf("%s: %s is served from %s", m.Status, d.Tenant, d.On)
	case d.Phase == move.PhaseHypercare && len(d.Flips) > 0 && d.LinkDown != "":
		return fmt.Sprintf("%s is served from %s; its copy on %s is being copied again (the link was lost); cutback is refused until it is in sync",
			d.Tenant, d.On, other)
	case d.Phase == move.PhaseHypercare && len(d.Flips) > 0:
		f := d.Flips[len(d.Flips)-1]
		return fmt.Sprintf("%s: %s is served from %s (was %s); paused %s; its copy on %s is kept in sync, so the flip can be undone",
			f.Kind, d.Tenant, f.To, f.From, describePause(f), f.From)
	}
	return ""
}

// printMove writes a move as plain lines: where it stands, the copy per
// table, the lag, the parity check, every flip with its pause, and what
// can be done next.
func printMove(w io.Writer, m *move.Info) {
	d := m.Data
	if o := outcome(m); o != "" {
		fmt.Fprintln(w, o)
	}
	fmt.Fprintf(w, "move %s: tenant %s from %s to %s, served from %s\n", m.ID, d.Tenant, d.Source, d.Target, d.On)
	fmt.Fprintf(w, "  status %s, step %s, phase %s\n", m.Status, m.Step, d.Phase)
	if m.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", m.Error)
	}
	if d.LastError != "" {
		fmt.Fprintf(w, "  last error: %s\n", d.LastError)
	}
	if len(d.Flips) == 0 {
		for _, t := range d.Copy {
			label, _, _, _ := copyLabel(t, d.SourceRows[t.Table])
			fmt.Fprintf(w, "  copy %-22s %s\n", t.Table, label)
		}
	}
	if d.CopySeconds > 0 {
		built := 0
		for _, t := range d.Copy {
			built += t.IndexesBuilt
		}
		fmt.Fprintf(w, "  initial copy of %d tables took %.2f s", len(d.Copy), d.CopySeconds)
		if built > 0 {
			fmt.Fprintf(w, " (%d indexes built after their tables' load)", built)
		}
		fmt.Fprintln(w)
	}
	if m.Status == workflow.StatusRunning {
		fmt.Fprintf(w, "  replication lag %d bytes\n", d.LagBytes)
	}
	if v := d.Verify; v != nil {
		verdict := "match"
		if !v.OK {
			verdict = "differ"
		}
		fmt.Fprintf(w, "  verify: %d rows in %d chunks %s on both sides (%.0f rows/s)\n", v.Rows, v.Chunks, verdict, v.RowsPerSec)
	}
	for _, f := range d.Flips {
		fmt.Fprintf(w, "  %s %s -> %s at %s: pause %s\n", f.Kind, f.From, f.To, f.At.Format(time.RFC3339), describePause(f))
	}
	for _, r := range d.Relinks {
		done := "not in sync yet"
		if !r.Done.IsZero() {
			done = fmt.Sprintf("in sync again %.1f s later", r.Done.Sub(r.At).Seconds())
		}
		fmt.Fprintf(w, "  link lost at %s (in %s): %s; %s; %s\n", r.At.Format(time.RFC3339), r.Step, r.Reason, r.Action, done)
	}
	if !d.HypercareEnds.IsZero() && m.Status == workflow.StatusRunning {
		fmt.Fprintf(w, "  hypercare until %s\n", d.HypercareEnds.Format(time.RFC3339))
	}
	if next := nextCommands(m, selfCommand()); next != "" {
		fmt.Fprintf(w, "  next: %s\n", next)
	}
	if len(m.Events) > 0 {
		fmt.Fprintln(w, "  events:")
		n := len(m.Events)
		for _, e := range m.Events[max(0, n-12):] {
			fmt.Fprintf(w, "    %s %-10s %-9s %s\n", e.At.Format("15:04:05.000"), e.Step, e.Kind, e.Message)
		}
	}
}

// nextCommands names what the operator can run next on a waiting move, as
// self (this binary as the user types it) commands.
func nextCommands(m *move.Info, self string) string {
	if m.Status != workflow.StatusRunning {
		return ""
	}
	switch m.Data.Phase {
	case move.PhaseReady:
		return fmt.Sprintf("%s move promote %s (or cancel)", self, m.Data.Tenant)
	case move.PhaseHypercare:
		if m.Data.LinkDown != "" {
			return fmt.Sprintf("wait until the link is in sync (cutback is refused until then), or %s move complete %s", self, m.Data.Tenant)
		}
		if m.Data.On == m.Data.Target {
			return fmt.Sprintf("%s move complete %s (purges the copy on %s), or cutback", self, m.Data.Tenant, m.Data.Source)
		}
		return fmt.Sprintf("%s move complete %s (purges the copy on %s), promote again, or cancel", self, m.Data.Tenant, m.Data.Target)
	}
	return ""
}

// followMove shows live progress bars (copy per table, verify) until the
// move waits for the operator, is in hypercare, or ends.
func (a *app) followMove(ctx context.Context, c *control.Client, id string) error {
	var out io.Writer = a.stderr
	if a.output == "json" {
		out = io.Discard
	}
	p := mpb.NewWithContext(ctx, mpb.WithOutput(out), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
	bars := map[string]*labelledBar{}
	bar := func(name string) *labelledBar {
		b, ok := bars[name]
		if !ok {
			b = &labelledBar{}
			b.label.Store(new(string))
			b.Bar = p.AddBar(1, mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-28s", name))),
				mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return *b.label.Load() })))
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
			bar("copy "+t.Table).showCopy(t, d.SourceRows[t.Table])
		}
		if v := d.Verify; v != nil {
			var total int64
			for _, n := range d.SourceRows {
				total += n
			}
			b := bar("verify")
			verdict := "match"
			if !v.OK {
				verdict = "differ"
			}
			b.show(fmt.Sprintf("%d rows in %d chunks %s (%.0f rows/s)", v.Rows, v.Chunks, verdict, v.RowsPerSec), max(v.Rows, 1), max(v.Rows, total, 1), true)
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

// labelledBar is a progress bar whose numbers are a label of its own, so
// that an empty table reads "0 rows" rather than the bar's 1 of 1.
type labelledBar struct {
	*mpb.Bar
	label atomic.Pointer[string]
}

// show sets the label and the bar's fill (current of total; done completes
// the bar).
func (b *labelledBar) show(label string, current, total int64, done bool) {
	b.label.Store(&label)
	b.SetTotal(total, false)
	b.SetCurrent(current)
	if done {
		b.SetTotal(-1, true)
	}
}

// showCopy shows one table's initial copy.
func (b *labelledBar) showCopy(t logrepl.TableSync, sourceRows int64) {
	b.show(copyLabel(t, sourceRows))
}

// copyLabel says where one table's initial copy stands, with the bar's fill:
// while copying, rows copied of the source's rows at the start (never more
// copied than the total shown: rows that arrived since count in both); once
// copied, the rows the target had then.
func copyLabel(t logrepl.TableSync, sourceRows int64) (label string, current, total int64, done bool) {
	if t.State == logrepl.SyncReady {
		return fmt.Sprintf("copied, %d rows", t.Rows), 1, 1, true
	}
	total = max(sourceRows, t.Rows)
	return fmt.Sprintf("%s, %d of %d rows", copyState(t.State), t.Rows, total), t.Rows, max(total, 1), false
}
