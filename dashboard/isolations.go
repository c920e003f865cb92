package dashboard

import (
	"context"
	"fmt"
	"net/http"

	"tenantry/isolate"
	"tenantry/registry"
	"tenantry/workflow"
)

// Isolations reads and commands isolations (*isolate.Service). Command acts
// on the tenant's latest isolation, which is the running one when one runs
// (one active isolation per tenant).
type Isolations interface {
	Get(ctx context.Context, id string) (*isolate.Info, error)
	List(ctx context.Context, tenant string) ([]*isolate.Info, error)
	Command(ctx context.Context, tenant, name string) (*isolate.Info, error)
}

var isolationQuestions = map[string]string{
	isolate.SignalCutback:  "Take the tenant's data and traffic back to the pooled environment?",
	isolate.SignalComplete: "End hypercare now: purge the pooled copy and sever the link back?",
}

type isolationView struct {
	*isolate.Info
	Running  bool
	Commands []string
}

func newIsolationView(in *isolate.Info) *isolationView {
	v := &isolationView{Info: in, Running: in.Status == string(workflow.StatusRunning)}
	if v.Running {
		switch in.Step {
		case isolate.PhaseStandby, isolate.PhaseHypercare:
			v.Commands = []string{isolate.SignalComplete, isolate.SignalCutback}
		case isolate.PhaseCutback, isolate.PhaseComplete, "abort":
		default:
			v.Commands = []string{isolate.SignalCutback}
		}
	}
	return v
}

type isolationsData struct {
	Tenant     string
	Isolations []*isolate.Info
}

func (d *Dashboard) isolations(w http.ResponseWriter, r *http.Request, p *page) error {
	tenant := r.URL.Query().Get("tenant")
	if tenant != "" {
		if err := registry.ValidateTenantID(tenant); err != nil {
			return err
		}
	}
	list, err := d.cfg.Isolations.List(r.Context(), tenant)
	if err != nil {
		return err
	}
	p.Title, p.Nav, p.Data = "Isolations", "isolations", &isolationsData{Tenant: tenant, Isolations: list}
	return d.render(w, http.StatusOK, "isolations", p)
}

func (d *Dashboard) isolationView(r *http.Request) (any, string, error) {
	in, err := d.cfg.Isolations.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, "", err
	}
	return newIsolationView(in), "Isolation of " + in.Tenant, nil
}

func (d *Dashboard) isolationCommands() commandSet {
	return commandSet{path: "isolations", questions: isolationQuestions,
		describe: func(ctx context.Context, id string) (string, error) {
			in, err := d.cfg.Isolations.Get(ctx, id)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("Isolation %s of tenant %s, at phase %s.", in.ID, in.Tenant, in.Step), nil
		},
		run: func(ctx context.Context, id, name string) error {
			in, err := d.cfg.Isolations.Get(ctx, id)
			if err != nil {
				return err
			}
			if in.Status != string(workflow.StatusRunning) {
				return fmt.Errorf("isolation %s of %s is %s: %w", in.ID, in.Tenant, in.Status, workflow.ErrNotRunning)
			}
			_, err = d.cfg.Isolations.Command(ctx, in.Tenant, name)
			return err
		}}
}
