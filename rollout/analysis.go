package rollout

import (
	"fmt"
	"time"

	"tenantry/registry"
)

// Figures are one stack's request outcomes over one interval, as the
// analysis judges them.
type Figures struct {
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors_5xx"`
	ErrorRate float64 `json:"error_rate"`
	P99Ms     float64 `json:"p99_ms"`
}

func figuresOf(s registry.StackStats) Figures {
	return Figures{Requests: s.Requests, Errors: s.Errors, ErrorRate: s.ErrorRate(), P99Ms: ms(s.Quantile(0.99))}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Verdict is the judgement of one interval of a step's grace period.
type Verdict struct {
	At time.Time `json:"at"`
	// Step is the index of the traffic step, Weight the new stack's weight.
	Step   int `json:"step"`
	Weight int `json:"weight"`
	// New and Old are the stacks' figures over the interval (New includes
	// the probes sent through the preview, counted as Probes).
	New    Figures `json:"new"`
	Old    Figures `json:"old"`
	Probes int     `json:"probes,omitempty"`
	// BaselineP99Ms is the old stack's p99 the new one was held to: the
	// old stack's over the interval, or its last one with enough requests.
	BaselineP99Ms float64 `json:"baseline_p99_ms"`
	Pass          bool    `json:"pass"`
	// Reasons say why an interval failed ("no_data", "error_rate", "p99").
	Reasons []string `json:"reasons,omitempty"`
	// Detail is the verdict in words, with its figures.
	Detail string `json:"detail"`
}

// Verdict reasons.
const (
	ReasonNoData    = "no_data"
	ReasonErrorRate = "error_rate"
	ReasonP99       = "p99"
)

// judge decides one interval from the new stack's figures and the old
// stack's p99 baseline (0: none known). It does no I/O. Too few requests
// (below MinRequests) fail: no data never passes.
func judge(p Params, nw Figures, baselineP99Ms float64) (pass bool, reasons []string, detail string) {
	if nw.Requests < int64(p.MinRequests) {
		return false, []string{ReasonNoData}, fmt.Sprintf("%d requests, fewer than the %d needed to judge", nw.Requests, p.MinRequests)
	}
	detail = fmt.Sprintf("%d requests, 5xx rate %.4f (max %.4f), p99 %.1fms", nw.Requests, nw.ErrorRate, p.MaxErrorRate, nw.P99Ms)
	if nw.ErrorRate > p.MaxErrorRate {
		reasons = append(reasons, ReasonErrorRate)
	}
	if baselineP99Ms > 0 {
		limit := max(p.MaxP99Ratio*baselineP99Ms, baselineP99Ms+ms(time.Duration(p.MinP99Delta)))
		detail += fmt.Sprintf(" (max %.1fms: %.2f × old %.1fms, at least old + %v)", limit, p.MaxP99Ratio, baselineP99Ms, time.Duration(p.MinP99Delta))
		if nw.P99Ms > limit {
			reasons = append(reasons, ReasonP99)
		}
	}
	return len(reasons) == 0, reasons, detail
}
