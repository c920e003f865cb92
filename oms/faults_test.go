package oms_test

import (
	"net/http"
	"testing"
	"time"

	"tenantry/oms"
)

func TestServer_Faults(t *testing.T) {
	t.Run("error rate 1 fails every request without doing its work", func(t *testing.T) {
		e := newEnvWith(t, func(c *oms.Config) { c.Faults = oms.Faults{ErrorRate: 1} })
		r := e.must(http.StatusInternalServerError, "acme", "POST", "/v1/products", map[string]any{"sku": "a", "name": "A"})
		if r.code() != oms.CodeInjectedFault {
			t.Errorf("code %q, want %q", r.code(), oms.CodeInjectedFault)
		}
		if n := e.counts()["products"]; n != 0 {
			t.Errorf("%d products written by a failed request", n)
		}
	})
	t.Run("latency is added", func(t *testing.T) {
		e := newEnvWith(t, func(c *oms.Config) { c.Faults = oms.Faults{Latency: 150 * time.Millisecond} })
		start := time.Now()
		e.must(http.StatusOK, "acme", "GET", "/v1/orders", nil)
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Errorf("request took %v, want at least the injected 150ms", d)
		}
	})
	t.Run("faults begin after the first requests", func(t *testing.T) {
		e := newEnvWith(t, func(c *oms.Config) { c.Faults = oms.Faults{ErrorRate: 1, After: 3} })
		for range 3 {
			e.must(http.StatusOK, "acme", "GET", "/v1/orders", nil)
		}
		e.must(http.StatusInternalServerError, "acme", "GET", "/v1/orders", nil)
	})
	t.Run("out of range is refused", func(t *testing.T) {
		for _, f := range []oms.Faults{{ErrorRate: 1.5}, {ErrorRate: -0.1}, {Latency: -time.Second}, {Latency: time.Hour}} {
			if _, err := oms.NewServer(oms.Config{DB: oms.PoolDB{}, HeaderKey: headerKey, Stack: testStack, Faults: f}); err == nil {
				t.Errorf("faults %+v accepted", f)
			}
		}
	})
}

func TestFaultsFromEnv(t *testing.T) {
	t.Setenv(oms.EnvFaultErrorRate, "0.2")
	t.Setenv(oms.EnvFaultLatency, "200ms")
	t.Setenv(oms.EnvFaultAfter, "7")
	f, err := oms.FaultsFromEnv()
	if err != nil || f != (oms.Faults{ErrorRate: 0.2, Latency: 200 * time.Millisecond, After: 7}) {
		t.Fatalf("FaultsFromEnv = %+v, %v", f, err)
	}
	back := map[string]bool{}
	for _, kv := range f.Env() {
		back[kv] = true
	}
	if !back[oms.EnvFaultErrorRate+"=0.2"] || !back[oms.EnvFaultLatency+"=200ms"] || !back[oms.EnvFaultAfter+"=7"] {
		t.Errorf("Env() = %v", f.Env())
	}
	t.Setenv(oms.EnvProduction, "1")
	if _, err := oms.FaultsFromEnv(); err == nil {
		t.Error("faults accepted on a production instance")
	}
	t.Setenv(oms.EnvFaultErrorRate, "")
	t.Setenv(oms.EnvFaultLatency, "")
	t.Setenv(oms.EnvFaultAfter, "")
	if f, err := oms.FaultsFromEnv(); err != nil || f.Enabled() {
		t.Errorf("production without faults: %+v, %v", f, err)
	}
}
