// Package load generates a realistic order-management workload against the
// gateway, the way a real client would: every write carries its own
// Idempotency-Key and is retried with that same key on retryable failures
// until it is acknowledged or its deadline passes. It measures what clients
// experience (acknowledgements, retries, failures by code, latency
// percentiles, the longest stall) and writes a ledger of every attempted and
// acknowledged write, which package check compares with the databases.
//
// The tenantry load command and the end-to-end tests of moves, rollouts and
// failovers use it.
package load

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"tenantry/registry"
)

// ErrInvalidConfig is returned (wrapped) by Config.Validate.
var ErrInvalidConfig = errors.New("invalid load config")

// Target is one tenant the load runs as, with the API key the gateway
// authenticates it by (none when Config.Authorize signs requests instead).
type Target struct {
	Tenant string `json:"tenant"`
	APIKey string `json:"api_key"`
}

// Mix is the share of each kind of operation; the shares are relative
// weights. The zero Mix means DefaultMix.
type Mix struct {
	PlaceOrder   float64 `json:"place_order"`
	Read         float64 `json:"read"`
	FulfilCancel float64 `json:"fulfil_cancel"`
}

// DefaultMix is the mix used when Config.Mix is zero.
var DefaultMix = Mix{PlaceOrder: 0.6, Read: 0.3, FulfilCancel: 0.1}

// RetryPolicy says how a request is retried on a retryable failure: a
// connection error, a 502/503/504 (the gateway, or a tenant paused during a
// move) or a 429. Zero fields mean the documented defaults.
type RetryPolicy struct {
	// MaxAttempts bounds the attempts of one request; 0 means unbounded
	// (only Deadline stops it).
	MaxAttempts int
	// BaseBackoff is the first backoff (default 20 ms); it doubles per
	// attempt up to MaxBackoff (default 1 s), with full jitter.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// Deadline bounds one request including all its retries (default 30 s).
	Deadline time.Duration
	// AttemptTimeout bounds one attempt (default 10 s).
	AttemptTimeout time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.BaseBackoff <= 0 {
		p.BaseBackoff = 20 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = time.Second
	}
	if p.Deadline <= 0 {
		p.Deadline = 30 * time.Second
	}
	if p.AttemptTimeout <= 0 {
		p.AttemptTimeout = 10 * time.Second
	}
	return p
}

// Config describes one load run. Zero values mean the documented defaults.
type Config struct {
	// BaseURL is the gateway, e.g. http://127.0.0.1:8080.
	BaseURL string
	Targets []Target
	// Rate is the target number of requests per second over all workers;
	// 0 means as fast as the workers go.
	Rate float64
	// Concurrency is the number of workers (default 8).
	Concurrency int
	// Duration and Requests bound the run; whichever is reached first ends
	// it. At least one must be set.
	Duration time.Duration
	Requests int
	// Stop, when closed, ends the run gracefully: no request is started
	// after it, and those in flight finish (with their retries), so every
	// write is resolved. Cancelling Run's context instead cuts them off.
	Stop <-chan struct{}
	Mix  Mix
	// Ledger receives one JSON line per attempted, acknowledged or refused
	// write; nil discards. Writes to it are serialised.
	Ledger io.Writer
	// HTTPClient sends the requests; nil means a client with a pool sized
	// to Concurrency.
	HTTPClient *http.Client
	// Authorize sets the credentials of request r, sent as target t, once
	// its method and URL are final. Nil means "Authorization: Bearer
	// <t.APIKey>", what the gateway takes; a client of the service
	// instances themselves (a benchmark's baseline) signs the tenant header
	// there instead (tenantsig.SignRequest).
	Authorize func(r *http.Request, t Target)
	Retry     RetryPolicy
	// Seed makes the choice of operations and idempotency keys
	// reproducible; 0 means a seed from the clock.
	Seed int64
	// Logger: nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Validate checks the config without changing it.
func (c *Config) Validate() error {
	if c.BaseURL == "" {
		return fmt.Errorf("%w: base URL is required", ErrInvalidConfig)
	}
	if len(c.Targets) == 0 {
		return fmt.Errorf("%w: at least one target is required", ErrInvalidConfig)
	}
	seen := map[string]bool{}
	for _, t := range c.Targets {
		if err := registry.ValidateTenantID(t.Tenant); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
		if t.APIKey == "" && c.Authorize == nil {
			return fmt.Errorf("%w: tenant %s has no API key", ErrInvalidConfig, t.Tenant)
		}
		if seen[t.Tenant] {
			return fmt.Errorf("%w: tenant %s given twice", ErrInvalidConfig, t.Tenant)
		}
		seen[t.Tenant] = true
	}
	if c.Rate < 0 || c.Concurrency < 0 || c.Duration < 0 || c.Requests < 0 {
		return fmt.Errorf("%w: rate, concurrency, duration and requests must not be negative", ErrInvalidConfig)
	}
	if m := c.Mix; m.PlaceOrder < 0 || m.Read < 0 || m.FulfilCancel < 0 {
		return fmt.Errorf("%w: mix shares must not be negative", ErrInvalidConfig)
	}
	return nil
}

// withDefaults returns a copy with defaults filled in.
func (c Config) withDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	if c.Mix == (Mix{}) {
		c.Mix = DefaultMix
	}
	if c.Ledger == nil {
		c.Ledger = io.Discard
	}
	if c.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = c.Concurrency * 2
		c.HTTPClient = &http.Client{Transport: tr}
	}
	if c.Seed == 0 {
		c.Seed = time.Now().UnixNano()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Retry = c.Retry.withDefaults()
	return c
}
