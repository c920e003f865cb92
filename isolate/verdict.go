package isolate

import (
	"context"
	"fmt"
	"strings"
	"time"

	"tenantry/move"
	"tenantry/rollout"
)

// Verdict is one hypercare judgement of the tenant's dedicated stack and
// its link back: the stack's 5xx rate and p99 over the interval against
// the cutover rollout's thresholds and baseline (the tenant's own p99 on
// the shared stack before the cutover, Data.Baseline; without enough of
// its history, the rollout's), and the link back's health and lag.
type Verdict struct {
	At       time.Time `json:"at"`
	Requests int64     `json:"requests"`
	Errors   int64     `json:"errors_5xx"`
	P99MS    float64   `json:"p99_ms"`
	LagBytes int64     `json:"lag_bytes"`
	// Pass is false when a reason fails it; NoData: too few requests to
	// judge the stack (neither passes nor fails).
	Pass    bool     `json:"pass"`
	NoData  bool     `json:"no_data,omitempty"`
	Reasons []string `json:"reasons,omitempty"`
}

// maxVerdicts bounds the verdicts kept in Data.
const maxVerdicts = 20

// maxLinkLag fails a verdict: the link back that far behind would make a
// cutback wait.
const maxLinkLag = 64 << 20

// judge records a verdict when one is due (every rollout interval) and
// returns it, or nil when none was due. Consecutive failing verdicts count
// in d.FailingVerdicts.
func (s *Service) judge(ctx context.Context, d *Data, mv *move.Info) (*Verdict, error) {
	if d.RolloutID == "" {
		return nil, nil
	}
	ro, err := s.cfg.Rollouts.Get(ctx, d.RolloutID, false)
	if err != nil {
		return nil, err
	}
	p := ro.Data.Params
	stack := d.Request.Stack
	if d.StatsAfter.IsZero() {
		_, upto, err := s.cfg.Store.StackStats(ctx, []string{stack}, s.cfg.Now())
		if err != nil {
			return nil, err
		}
		d.StatsAfter = upto
		return nil, nil
	}
	if s.cfg.Now().Before(d.StatsAfter.Add(time.Duration(p.Interval))) {
		return nil, nil
	}
	stats, upto, err := s.cfg.Store.StackStats(ctx, []string{stack}, d.StatsAfter)
	if err != nil {
		return nil, err
	}
	d.StatsAfter = upto
	st := stats[stack]
	v := Verdict{At: upto.UTC(), Requests: st.Requests, Errors: st.Errors, LagBytes: mv.Data.LagBytes, Pass: true}
	v.P99MS = float64(st.Quantile(0.99).Microseconds()) / 1000
	if st.Requests < int64(p.MinRequests) {
		v.NoData = true
	} else {
		if rate := st.ErrorRate(); rate > p.MaxErrorRate {
			v.Reasons = append(v.Reasons, fmt.Sprintf("5xx rate %.4f over %.4f", rate, p.MaxErrorRate))
		}
		base := ro.Data.BaselineP99Ms
		if d.Baseline != nil && d.Baseline.Used {
			base = d.Baseline.P99MS
		}
		bound := max(base*p.MaxP99Ratio, base+float64(time.Duration(p.MinP99Delta).Microseconds())/1000)
		if base > 0 && v.P99MS > bound {
			v.Reasons = append(v.Reasons, fmt.Sprintf("p99 %.1f ms over %.1f ms (%.2f × the tenant's %.1f ms on %s, at least +%v)",
				v.P99MS, bound, p.MaxP99Ratio, base, d.SourceStack, time.Duration(p.MinP99Delta)))
		}
	}
	if mv.Data.LagBytes > maxLinkLag {
		v.Reasons = append(v.Reasons, fmt.Sprintf("link back %d bytes behind", mv.Data.LagBytes))
	}
	if mv.Data.LastError != "" && strings.Contains(mv.Data.LastError, "subscription") {
		v.Reasons = append(v.Reasons, "link back: "+mv.Data.LastError)
	}
	v.Pass = len(v.Reasons) == 0
	switch {
	case !v.Pass:
		d.FailingVerdicts++
	case !v.NoData:
		d.FailingVerdicts = 0
	}
	d.Verdicts = append(d.Verdicts, v)
	if len(d.Verdicts) > maxVerdicts {
		d.Verdicts = d.Verdicts[len(d.Verdicts)-maxVerdicts:]
	}
	return &v, nil
}

// BaselineWindow is how much of the tenant's history on its stack the
// baseline reads (whole hours at the gateways, the current one included).
const BaselineWindow = 24 * time.Hour

// baseline reads the tenant's own outcomes on the stack serving it (the
// gateways' per-tenant figures) over BaselineWindow: with at least the
// rollout's MinRequests, its p99 is what the dedicated stack is held to.
func (s *Service) baseline(ctx context.Context, d *Data) (*Baseline, error) {
	since := s.cfg.Now().Add(-BaselineWindow).UTC()
	st, err := s.cfg.Store.TenantStats(ctx, d.Request.Tenant, d.SourceStack, since)
	if err != nil {
		return nil, err
	}
	b := &Baseline{Stack: d.SourceStack, Since: since, Requests: st.Requests, Errors: st.Errors,
		P99MS: float64(st.Quantile(0.99).Microseconds()) / 1000}
	minReq := d.Request.Rollout.MinRequests
	if minReq == 0 {
		minReq = rollout.DefaultParams.MinRequests
	}
	b.Used = st.Requests >= int64(minReq)
	if b.Used {
		b.Detail = fmt.Sprintf("the tenant's own p99 on %s: %.1f ms over %d requests since %s", d.SourceStack, b.P99MS, st.Requests, since.Format(time.RFC3339))
	} else {
		b.Detail = fmt.Sprintf("only %d requests of the tenant on %s since %s (fewer than %d): the cutover holds the new stack to %s's p99",
			st.Requests, d.SourceStack, since.Format(time.RFC3339), minReq, d.SourceStack)
	}
	return b, nil
}
