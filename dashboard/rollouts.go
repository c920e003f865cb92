package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"tenantry/registry"
	"tenantry/rollout"
	"tenantry/workflow"
)

// Rollouts reads and commands rollouts (*rollout.Service).
type Rollouts interface {
	Get(ctx context.Context, id string, events bool) (*rollout.Info, error)
	List(ctx context.Context, route string) ([]*rollout.Info, error)
	Command(ctx context.Context, id, name string) (*rollout.Info, error)
}

// rolloutPhases are a rollout's phases in the order the timeline shows
// them; rolled_back replaces holding and retired when it happens.
var rolloutPhases = []string{rollout.PhasePrecheck, rollout.PhaseAnalysing, rollout.PhaseHolding, rollout.PhaseRetired}

var rolloutQuestions = map[string]string{
	rollout.SignalPromote: "Skip the remaining steps and send all of the route's traffic to the new stack now?",
	rollout.SignalAbort:   "Roll back now: all of the route's traffic back to the old stack?",
	rollout.SignalCutback: "Send the route's traffic back to the old stack (it is still held)?",
	rollout.SignalRetire:  "Stop holding the old stack now?",
}

// maxVerdicts bounds the verdicts a rollout's table shows (the newest);
// the charts show every interval.
const maxVerdicts = 30

type rolloutView struct {
	*rollout.Info
	Running  bool
	Timeline []phaseStep
	Charts   []*chart
	Verdicts []rollout.Verdict // newest first
	Commands []string
}

func newRolloutView(in *rollout.Info) *rolloutView {
	v := &rolloutView{Info: in, Running: in.Status == workflow.StatusRunning}
	phases := rolloutPhases
	if in.Data.Phase == rollout.PhaseRolledBack {
		phases = []string{rollout.PhasePrecheck, rollout.PhaseAnalysing, rollout.PhaseRolledBack}
	}
	cur := slices.Index(phases, in.Data.Phase)
	for i, ph := range phases {
		s := "todo"
		switch {
		case i < cur || (i == cur && !v.Running):
			s = "done"
		case i == cur:
			s = "current"
		}
		v.Timeline = append(v.Timeline, phaseStep{Name: ph, State: s})
	}
	var weight, newErr, oldErr, newP99, oldP99 []float64
	for _, iv := range in.Data.Intervals {
		weight = append(weight, float64(iv.Weight))
		newErr, oldErr = append(newErr, iv.New.ErrorRate*100), append(oldErr, iv.Old.ErrorRate*100)
		newP99, oldP99 = append(newP99, iv.New.P99Ms), append(oldP99, iv.Old.P99Ms)
	}
	if len(in.Data.Intervals) > 0 {
		d := in.Data
		pctf := func(f float64) string { return fmt.Sprintf("%.1f%%", f) }
		v.Charts = []*chart{
			newChart("Weight of "+d.To, 100, func(f float64) string { return fmt.Sprintf("%.0f%%", f) }, 0,
				namedValues{d.To, "new", weight}),
			newChart("5xx rate", 1, pctf, d.Params.MaxErrorRate*100,
				namedValues{d.To, "new", newErr}, namedValues{d.From, "old", oldErr}),
			newChart("p99", 10, func(f float64) string { return fmt.Sprintf("%.0f ms", f) }, 0,
				namedValues{d.To, "new", newP99}, namedValues{d.From, "old", oldP99}),
		}
	}
	for i := len(in.Data.Intervals) - 1; i >= 0 && len(v.Verdicts) < maxVerdicts; i-- {
		v.Verdicts = append(v.Verdicts, in.Data.Intervals[i])
	}
	if v.Running {
		switch in.Data.Phase {
		case rollout.PhasePrecheck:
			v.Commands = []string{rollout.SignalAbort}
		case rollout.PhaseAnalysing:
			v.Commands = []string{rollout.SignalPromote, rollout.SignalAbort}
		case rollout.PhaseHolding:
			v.Commands = []string{rollout.SignalCutback, rollout.SignalRetire}
		}
	}
	return v
}

type rolloutsData struct {
	Route    string
	Rollouts []*rollout.Info
}

func (d *Dashboard) rollouts(w http.ResponseWriter, r *http.Request, p *page) error {
	route := r.URL.Query().Get("route")
	if route != "" && route != rollout.DefaultRouteName {
		if err := registry.ValidateTenantID(route); err != nil {
			return err
		}
	}
	list, err := d.cfg.Rollouts.List(r.Context(), route)
	if err != nil {
		return err
	}
	p.Title, p.Nav, p.Data = "Rollouts", "rollouts", &rolloutsData{Route: route, Rollouts: list}
	return d.render(w, http.StatusOK, "rollouts", p)
}

func (d *Dashboard) rolloutView(r *http.Request) (any, string, error) {
	in, err := d.cfg.Rollouts.Get(r.Context(), r.PathValue("id"), false)
	if err != nil {
		return nil, "", err
	}
	return newRolloutView(in), "Rollout of " + in.Data.Route, nil
}

func (d *Dashboard) rolloutCommands() commandSet {
	return commandSet{path: "rollouts", questions: rolloutQuestions,
		describe: func(ctx context.Context, id string) (string, error) {
			in, err := d.cfg.Rollouts.Get(ctx, id, false)
			if err != nil {
				return "", err
			}
			x := in.Data
			return fmt.Sprintf("Rollout %s of route %s, %s → %s, the new stack at %d%% (phase %s).", in.ID, x.Route, x.From, x.To, x.Weight, x.Phase), nil
		},
		run: func(ctx context.Context, id, name string) error {
			_, err := d.cfg.Rollouts.Command(ctx, id, name)
			return err
		}}
}
