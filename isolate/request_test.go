package isolate

import (
	"errors"
	"testing"

	"tenantry/registry"
)

// TestRequest_Fill: --until names a phase from preflight to standby, the
// space factor defaults to 3 and stays within 1..1e15; a bad value is
// ErrInvalid.
func TestRequest_Fill(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  Request
		ok   bool
	}{
		{"defaults", Request{Tenant: "acme"}, true},
		{"until preflight", Request{Tenant: "acme", Until: PhasePreflight}, true},
		{"until standby", Request{Tenant: "acme", Until: PhaseStandby}, true},
		{"until hypercare", Request{Tenant: "acme", Until: PhaseHypercare}, false},
		{"until complete", Request{Tenant: "acme", Until: PhaseComplete}, false},
		{"until cutback", Request{Tenant: "acme", Until: PhaseCutback}, false},
		{"until nowhere", Request{Tenant: "acme", Until: "nowhere"}, false},
		{"space factor 1", Request{Tenant: "acme", SpaceFactor: 1}, true},
		{"space factor under 1", Request{Tenant: "acme", SpaceFactor: 0.5}, false},
		{"negative space factor", Request{Tenant: "acme", SpaceFactor: -3}, false},
		{"space factor past 1e15", Request{Tenant: "acme", SpaceFactor: 1e16}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			err := req.fill()
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, registry.ErrInvalid)) {
				t.Fatalf("fill: %v, want ok %v (or ErrInvalid)", err, tc.ok)
			}
			if tc.ok && tc.req.SpaceFactor == 0 && req.SpaceFactor != DefaultSpaceFactor {
				t.Errorf("default space factor %g", req.SpaceFactor)
			}
		})
	}
}
