package control

import (
	"net/http"

	"tenantry/ha"
)

// EnableHA adds the switchover endpoints, served by hs.
func (s *Server) EnableHA(hs *ha.Service) {
	s.Handle("POST /v1/clusters/{name}/switchover", func(r *http.Request) (int, any, error) {
		var req ha.SwitchoverRequest
		if err := DecodeJSON(r, &req); err != nil {
			return 0, nil, err
		}
		req.Cluster = r.PathValue("name")
		in, err := hs.Switchover(r.Context(), req)
		if err != nil {
			return 0, nil, withActive(err)
		}
		return http.StatusCreated, in, nil
	})
	s.Handle("POST /v1/clusters/{name}/upgrade", func(r *http.Request) (int, any, error) {
		var req ha.UpgradeRequest
		if err := DecodeJSON(r, &req); err != nil {
			return 0, nil, err
		}
		req.Cluster = r.PathValue("name")
		in, err := hs.Upgrade(r.Context(), req)
		if err != nil {
			return 0, nil, withActive(err)
		}
		return http.StatusCreated, in, nil
	})
	s.Handle("GET /v1/switchovers/{id}", func(r *http.Request) (int, any, error) {
		in, err := hs.Get(r.Context(), r.PathValue("id"))
		return http.StatusOK, in, err
	})
	s.Handle("POST /v1/clusters/{name}/members/{member}/rejoin", func(r *http.Request) (int, any, error) {
		name, member := r.PathValue("name"), r.PathValue("member")
		if err := hs.Rejoin(r.Context(), name, member); err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]string{"cluster": name, "rejoined": member}, nil
	})
}
