package control

import (
	"context"
	"net/http"
	"net/url"

	"tenantry/registry"
)

// SetTenantLimits sets tenant's request limits at the gateway (zero fields:
// the gateway's defaults). Gateways apply them from their next snapshot.
func (s *Service) SetTenantLimits(ctx context.Context, tenant string, l registry.Limits) error {
	return s.cfg.Store.SetTenantLimits(ctx, tenant, l)
}

// TenantLimits is the answer of PUT /v1/tenants/{id}/limits.
type TenantLimits struct {
	Tenant string `json:"tenant"`
	registry.Limits
}

func (s *Server) setTenantLimits(r *http.Request) (int, any, error) {
	var l registry.Limits
	if err := DecodeJSON(r, &l); err != nil {
		return 0, nil, err
	}
	id := r.PathValue("id")
	if err := s.svc.SetTenantLimits(r.Context(), id, l); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, TenantLimits{Tenant: id, Limits: l}, nil
}

// SetTenantLimits sets tenant's request limits at the gateway.
func (c *Client) SetTenantLimits(ctx context.Context, tenant string, l registry.Limits) (*TenantLimits, error) {
	var out TenantLimits
	return &out, c.Do(ctx, http.MethodPut, "/v1/tenants/"+url.PathEscape(tenant)+"/limits", l, &out)
}
