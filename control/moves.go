package control

import (
	"errors"
	"net/http"
	"strconv"

	"tenantry/move"
	"tenantry/registry"
	"tenantry/workflow"
)

// EnableMoves adds the move endpoints, served by ms.
func (s *Server) EnableMoves(ms *move.Service) {
	s.Handle("POST /v1/moves", func(r *http.Request) (int, any, error) {
		var req move.StartRequest
		if err := DecodeJSON(r, &req); err != nil {
			return 0, nil, err
		}
		st, err := ms.Start(r.Context(), req)
		if err != nil {
			return 0, nil, withActive(err)
		}
		return http.StatusCreated, st, nil
	})
	s.Handle("GET /v1/moves", func(r *http.Request) (int, any, error) {
		tenant := r.URL.Query().Get("tenant")
		if tenant != "" {
			if err := registry.ValidateTenantID(tenant); err != nil {
				return 0, nil, err
			}
		}
		list, err := ms.List(r.Context(), tenant)
		return http.StatusOK, map[string]any{"moves": list}, err
	})
	s.Handle("GET /v1/moves/{id}", func(r *http.Request) (int, any, error) {
		events, _ := strconv.ParseBool(r.URL.Query().Get("events"))
		st, err := ms.Get(r.Context(), r.PathValue("id"), events)
		return http.StatusOK, st, err
	})
	s.Handle("POST /v1/moves/{id}/{command}", func(r *http.Request) (int, any, error) {
		wait := r.URL.Query().Get("wait") != "false"
		st, err := ms.Command(r.Context(), r.PathValue("id"), r.PathValue("command"), wait)
		return http.StatusOK, st, err
	})
}

func withActive(err error) error {
	var ae *workflow.ActiveError
	if errors.As(err, &ae) {
		return &detailedError{err: err, details: map[string]any{"existing_id": ae.ExistingID}}
	}
	return err
}

// detailedError adds machine-readable details to an API error.
type detailedError struct {
	err     error
	details map[string]any
}

func (e *detailedError) Error() string           { return e.err.Error() }
func (e *detailedError) Unwrap() error           { return e.err }
func (e *detailedError) Details() map[string]any { return e.details }
