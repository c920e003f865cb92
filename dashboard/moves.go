package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"

	"tenantry/logrepl"
	"tenantry/move"
	"tenantry/registry"
	"tenantry/workflow"
)

// movePhases are a move's phases in the order the timeline shows them.
var movePhases = []string{move.PhasePreparing, move.PhaseReplicating, move.PhaseVerifying, move.PhaseReady,
	move.PhaseFlipping, move.PhaseHypercare, move.PhaseCompleting, move.PhaseDone}

// maxMoveEvents bounds the events a move view shows (the newest).
const maxMoveEvents = 100

// commands are the operator commands of a move, with what the confirmation
// asks.
var commands = map[string]string{
	move.SignalPromote:  "Flip the tenant to the other side now? Its transactions pause for the flip.",
	move.SignalCutback:  "Flip the tenant back to the source? Its transactions pause for the flip.",
	move.SignalComplete: "End the move, keeping the tenant where it is now and dropping the other side's copy?",
	move.SignalCancel:   "Cancel the move and drop the target's copy?",
}

type phaseStep struct {
	Name  string
	State string // done, current or todo
}

type tableProgress struct {
	logrepl.TableSync
	Total int64
	Pct   int64
	Label string // the sync state in words
}

// syncStates name pg_subscription_rel's states.
var syncStates = map[string]string{logrepl.SyncInit: "waiting", logrepl.SyncCopying: "copying",
	logrepl.SyncFinished: "catching up", logrepl.SyncSynced: "synced", logrepl.SyncReady: "replicating"}

type pausePart struct {
	Name string
	MS   int
}

type flipView struct {
	move.FlipRecord
	Parts []pausePart
}

// moveView is a move as its page shows it.
type moveView struct {
	*move.Info
	Running  bool
	Timeline []phaseStep
	Tables   []tableProgress
	Flips    []flipView
	Events   []workflow.Event
	Commands []string
	MaxPause int
}

func newMoveView(st *move.Info) *moveView {
	v := &moveView{Info: st, Running: st.Status == workflow.StatusRunning}
	cur := slices.Index(movePhases, st.Data.Phase)
	for i, ph := range movePhases {
		s := "todo"
		switch {
		case i < cur || st.Data.Phase == move.PhaseDone:
			s = "done"
		case i == cur:
			s = "current"
		}
		v.Timeline = append(v.Timeline, phaseStep{Name: ph, State: s})
	}
	if cur < 0 && st.Data.Phase != "" { // cancelling: off the main line
		v.Timeline = append(v.Timeline, phaseStep{Name: st.Data.Phase, State: "current"})
	}
	for _, c := range st.Data.Copy {
		total := st.Data.SourceRows[c.Table]
		p := pct(c.Rows, total)
		if c.State != logrepl.SyncInit && c.State != logrepl.SyncCopying {
			p = 100 // copied: the rows now are the target's, not progress
		}
		label := syncStates[c.State]
		if label == "" {
			label = c.State
		}
		v.Tables = append(v.Tables, tableProgress{TableSync: c, Total: total, Pct: p, Label: label})
	}
	for _, f := range st.Data.Flips {
		fv := flipView{FlipRecord: f}
		for name, ms := range f.Phases {
			fv.Parts = append(fv.Parts, pausePart{Name: name, MS: ms})
			v.MaxPause = max(v.MaxPause, ms)
		}
		sort.Slice(fv.Parts, func(i, j int) bool { return fv.Parts[i].MS > fv.Parts[j].MS })
		v.Flips = append(v.Flips, fv)
	}
	evs := st.Events
	if len(evs) > maxMoveEvents {
		evs = evs[len(evs)-maxMoveEvents:]
	}
	for i := len(evs) - 1; i >= 0; i-- {
		v.Events = append(v.Events, evs[i])
	}
	if v.Running {
		v.Commands = availableCommands(st)
	}
	return v
}

// availableCommands are the commands a running move may take as it is now,
// by the rules move.Service.Command checks (which still decides).
func availableCommands(st *move.Info) []string {
	d := st.Data
	var out []string
	if d.On != d.Target && d.Flip == nil && (d.Phase == move.PhaseReady || d.Phase == move.PhaseHypercare) {
		out = append(out, move.SignalPromote)
	}
	if d.On == d.Target && len(d.Flips) > 0 && d.Flip == nil {
		out = append(out, move.SignalCutback)
	}
	if len(d.Flips) > 0 && d.Flip == nil {
		out = append(out, move.SignalComplete)
	}
	if d.On != d.Target && d.Flip == nil {
		out = append(out, move.SignalCancel)
	}
	return out
}

type movesData struct {
	Tenant string
	Moves  []*move.Info
}

func (d *Dashboard) moves(w http.ResponseWriter, r *http.Request, p *page) error {
	tenant := r.URL.Query().Get("tenant")
	if tenant != "" {
		if err := registry.ValidateTenantID(tenant); err != nil {
			return err
		}
	}
	list, err := d.cfg.Moves.List(r.Context(), tenant)
	if err != nil {
		return err
	}
	p.Title, p.Nav, p.Data = "Moves", "moves", &movesData{Tenant: tenant, Moves: list}
	return d.render(w, http.StatusOK, "moves", p)
}

func (d *Dashboard) moveView(r *http.Request) (any, string, error) {
	st, err := d.cfg.Moves.Get(r.Context(), r.PathValue("id"), true)
	if err != nil {
		return nil, "", err
	}
	return newMoveView(st), "Move of " + st.Data.Tenant, nil
}

// moveCommands are the move's operator commands.
func (d *Dashboard) moveCommands() commandSet {
	return commandSet{path: "moves", questions: commands,
		describe: func(ctx context.Context, id string) (string, error) {
			st, err := d.cfg.Moves.Get(ctx, id, false)
			if err != nil {
				return "", err
			}
			m := st.Data
			return fmt.Sprintf("Move %s of tenant %s, %s → %s, now on %s (phase %s).", st.ID, m.Tenant, m.Source, m.Target, m.On, m.Phase), nil
		},
		run: func(ctx context.Context, id, name string) error {
			_, err := d.cfg.Moves.Command(ctx, id, name, true)
			return err
		}}
}
