package oms

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"time"
)

// Faults make a version misbehave on purpose, so that a rollout's analysis
// and automatic rollback can be shown (issue 13). They are test-only: off
// by default, read from the environment of an instance (FaultsFromEnv), and
// refused for a stack marked production. A faulty request does no work: it
// is answered before the handler runs.
type Faults struct {
	// ErrorRate is the share of API requests answered 500 injected_fault,
	// 0 to 1.
	ErrorRate float64 `json:"error_rate,omitempty"`
	// Latency is added to every API request before it is served.
	Latency time.Duration `json:"latency,omitempty"`
	// After is how many API requests an instance serves well before the
	// faults begin: a version that goes bad under traffic, after passing
	// its smoke suite.
	After int64 `json:"after,omitempty"`
}

// Environment variables of the test-only faults and of the production mark.
const (
	EnvFaultErrorRate = "TENANTRY_TEST_FAULT_ERROR_RATE"
	EnvFaultLatency   = "TENANTRY_TEST_FAULT_LATENCY"
	EnvFaultAfter     = "TENANTRY_TEST_FAULT_AFTER_REQUESTS"
	// EnvProduction marks an instance of a production stack ("1", "true"):
	// it refuses to start with faults.
	EnvProduction = "TENANTRY_PRODUCTION"
)

// ErrFaultsInProduction is returned for faults asked of a production stack.
var ErrFaultsInProduction = errors.New("test-only faults are refused for a production stack")

// Enabled reports whether any fault is set.
func (f Faults) Enabled() bool { return f.ErrorRate > 0 || f.Latency > 0 }

// Validate checks the ranges: an error rate in [0, 1], a latency in [0, 1 min].
func (f Faults) Validate() error {
	if f.ErrorRate < 0 || f.ErrorRate > 1 {
		return fmt.Errorf("fault error rate %v must be between 0 and 1", f.ErrorRate)
	}
	if f.Latency < 0 || f.Latency > time.Minute {
		return fmt.Errorf("fault latency %v must be between 0 and 1m", f.Latency)
	}
	if f.After < 0 {
		return fmt.Errorf("fault after %d requests must not be negative", f.After)
	}
	return nil
}

// Env returns the environment entries that FaultsFromEnv reads back.
func (f Faults) Env() []string {
	var env []string
	if f.ErrorRate > 0 {
		env = append(env, EnvFaultErrorRate+"="+strconv.FormatFloat(f.ErrorRate, 'g', -1, 64))
	}
	if f.Latency > 0 {
		env = append(env, EnvFaultLatency+"="+f.Latency.String())
	}
	if f.After > 0 && f.Enabled() {
		env = append(env, EnvFaultAfter+"="+strconv.FormatInt(f.After, 10))
	}
	return env
}

// FaultsFromEnv reads the faults of this process's environment; an instance
// marked production (EnvProduction) with faults gets ErrFaultsInProduction.
func FaultsFromEnv() (Faults, error) {
	var f Faults
	if v := os.Getenv(EnvFaultErrorRate); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return f, fmt.Errorf("%s: %w", EnvFaultErrorRate, err)
		}
		f.ErrorRate = r
	}
	if v := os.Getenv(EnvFaultLatency); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return f, fmt.Errorf("%s: %w", EnvFaultLatency, err)
		}
		f.Latency = d
	}
	if v := os.Getenv(EnvFaultAfter); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return f, fmt.Errorf("%s: %w", EnvFaultAfter, err)
		}
		f.After = n
	}
	if err := f.Validate(); err != nil {
		return f, err
	}
	if prod, _ := strconv.ParseBool(os.Getenv(EnvProduction)); prod && f.Enabled() {
		return f, ErrFaultsInProduction
	}
	return f, nil
}

// inject applies the faults to the n-th request (counted from 1): past
// After, it waits the added latency and returns an injected_fault error for
// the share of requests to fail.
func (f Faults) inject(n int64) error {
	if n <= f.After {
		return nil
	}
	if f.Latency > 0 {
		time.Sleep(f.Latency)
	}
	if f.ErrorRate > 0 && rand.Float64() < f.ErrorRate {
		return apiErr(CodeInjectedFault, "injected test fault")
	}
	return nil
}
