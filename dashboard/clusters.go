package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"tenantry/registry"
)

// MemberHealth is a cluster member as a probe found it.
type MemberHealth struct {
	registry.Member
	Reachable  bool
	InRecovery *bool
	// Replication is a standby's walsender state on the primary
	// ("streaming", ...); LagBytes and LagSeconds its replay lag.
	Replication string
	LagBytes    *int64
	LagSeconds  *float64
	Error       string
}

// Lag is a standby's replay lag in words ("3.0 MiB, 0.25 s"), "—" when the
// primary reports none.
func (m MemberHealth) Lag() string {
	if m.LagBytes == nil {
		return "—"
	}
	s := humanBytes(*m.LagBytes)
	if m.LagSeconds != nil {
		s += fmt.Sprintf(", %.2f s", *m.LagSeconds)
	}
	return s
}

// ClusterProbe probes every member of a cluster (the control plane passes
// control.Service.ClusterStatus). Unreachable members are reported, not an
// error.
type ClusterProbe func(ctx context.Context, cluster string) ([]MemberHealth, error)

// clusterInterval is how often a cluster's live view probes it: each probe
// connects to every member.
const clusterInterval = 2 * time.Second

type clusterView struct {
	Name    string
	Members []MemberHealth
	Probed  time.Time
}

func (d *Dashboard) clusterView(r *http.Request) (any, string, error) {
	name := r.PathValue("name")
	if err := registry.ValidateName("cluster", name); err != nil {
		return nil, "", err
	}
	ms, err := d.cfg.ClusterProbe(r.Context(), name)
	if err != nil {
		return nil, "", fmt.Errorf("probe cluster %s: %w", name, err)
	}
	return &clusterView{Name: name, Members: ms, Probed: d.cfg.Now()}, "Cluster " + name, nil
}
