package isolate

import (
	"context"
	"fmt"
	"strings"
	"time"

	"tenantry/move"
)

// Verdict is one hypercare judgement of the tenant's dedicated stack and
// its link back: the stack's 5xx rate and p99 over the interval against
// the cutover rollout's thresholds and baseline (the tenant's p99 on the
// shared stack, measured through the preview as the tenant), and the link
// back's health and lag.
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
