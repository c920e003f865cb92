package rollout

import (
	"errors"
	"slices"
	"testing"
	"time"

	"tenantry/registry"
)

func TestJudge(t *testing.T) {
	p := DefaultParams.withDefaults()
	for _, tc := range []struct {
		name     string
		nw       Figures
		baseline float64
		pass     bool
		reasons  []string
	}{
		{"good", Figures{Requests: 100, Errors: 1, ErrorRate: 0.01, P99Ms: 12}, 10, true, nil},
		{"no data never passes", Figures{Requests: 19, P99Ms: 5}, 10, false, []string{ReasonNoData}},
		{"no requests at all", Figures{}, 10, false, []string{ReasonNoData}},
		{"errors", Figures{Requests: 100, Errors: 2, ErrorRate: 0.02, P99Ms: 10}, 10, false, []string{ReasonErrorRate}},
		{"slow", Figures{Requests: 100, P99Ms: 210}, 10, false, []string{ReasonP99}},
		{"slower but within the floor", Figures{Requests: 100, P99Ms: 34}, 10, true, nil},
		{"slower than the ratio at large latencies", Figures{Requests: 100, P99Ms: 160}, 100, false, []string{ReasonP99}},
		{"within the ratio", Figures{Requests: 100, P99Ms: 149}, 100, true, nil},
		{"both", Figures{Requests: 100, Errors: 50, ErrorRate: 0.5, P99Ms: 500}, 10, false, []string{ReasonErrorRate, ReasonP99}},
		{"no baseline: latency not judged", Figures{Requests: 100, P99Ms: 500}, 0, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pass, reasons, detail := judge(p, tc.nw, tc.baseline)
			if pass != tc.pass || !slices.Equal(reasons, tc.reasons) {
				t.Errorf("judge = %v %v (%s), want %v %v", pass, reasons, detail, tc.pass, tc.reasons)
			}
		})
	}
}

func TestParams_Validate(t *testing.T) {
	if err := DefaultParams.withDefaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if p := (Params{}).withDefaults(); time.Duration(p.Grace) != 60*time.Second || !slices.Equal(p.Steps, []int{100}) {
		t.Errorf("defaults: grace %v steps %v", time.Duration(p.Grace), p.Steps)
	}
	for name, p := range map[string]Params{
		"steps not increasing":    {Steps: []int{50, 10, 100}},
		"steps not ending at 100": {Steps: []int{10, 50}},
		"step above 100":          {Steps: []int{150}},
		"interval too short":      {Interval: Duration(time.Millisecond)},
		"grace below interval":    {Interval: Duration(10 * time.Second), Grace: Duration(time.Second)},
		"failure limit":           {FailureLimit: -1},
		"error rate":              {MaxErrorRate: 1.5},
		"p99 ratio":               {MaxP99Ratio: 0.5},
		"min requests":            {MinRequests: -3},
		"hold":                    {Hold: Duration(-time.Hour)},
	} {
		if err := p.withDefaults().Validate(); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestBackends(t *testing.T) {
	for w, want := range map[int][]registry.Backend{
		0:   {{Stack: "blue", Weight: 100}},
		10:  {{Stack: "blue", Weight: 90}, {Stack: "green", Weight: 10}},
		100: {{Stack: "green", Weight: 100}},
	} {
		if got := backends("blue", "green", w); !slices.Equal(got, want) {
			t.Errorf("backends at %d = %v, want %v", w, got, want)
		}
	}
}

func TestValidateChecks(t *testing.T) {
	good := HTTPCheck{Name: "list", Method: "GET", Path: "/v1/orders?limit=1"}
	if err := ValidateChecks([]HTTPCheck{good, {Name: "make", Method: "POST", Path: "/v1/products", Body: []byte(`{"sku":"x"}`), Status: 201}}); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]HTTPCheck{
		"no name":       {Method: "GET", Path: "/v1/orders"},
		"bad method":    {Name: "x", Method: "TRACE", Path: "/v1/orders"},
		"relative path": {Name: "x", Method: "GET", Path: "v1/orders"},
		"dot segments":  {Name: "x", Method: "GET", Path: "/v1/../admin"},
		"body not JSON": {Name: "x", Method: "POST", Path: "/v1/orders", Body: []byte("{")},
		"status":        {Name: "x", Method: "GET", Path: "/v1/orders", Status: 42},
	} {
		if err := ValidateChecks([]HTTPCheck{c}); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if err := ValidateChecks(make([]HTTPCheck, MaxChecks+1)); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("too many checks: %v", err)
	}
}
