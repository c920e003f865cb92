package control

import (
	"errors"
	"fmt"
	"net/http"

	"tenantry/ha"
	"tenantry/isolate"
	"tenantry/move"
	"tenantry/registry"
	"tenantry/rollout"
	"tenantry/stack"
	"tenantry/workflow"
)

// ErrUnauthorized means the admin token was missing or wrong.
var ErrUnauthorized = errors.New("unauthorized")

// ErrUnavailable means a dependency (a database, a cluster) could not be
// reached; the request may be retried.
var ErrUnavailable = errors.New("unavailable")

// errorCodes is the one table that maps errors to HTTP statuses and stable
// codes, one code per sentinel. The client maps codes back to the same
// sentinels (APIError.Unwrap), so errors.Is works across the wire. Order
// matters only for an error that wraps two sentinels: the first match wins.
var errorCodes = []struct {
	err    error
	status int
	code   string
}{
	{ErrUnauthorized, http.StatusUnauthorized, "unauthorized"},
	{registry.ErrInvalid, http.StatusBadRequest, "invalid_request"},
	{registry.ErrNotFound, http.StatusNotFound, "not_found"},
	{registry.ErrExists, http.StatusConflict, "exists"},
	{registry.ErrConflict, http.StatusConflict, "conflict"},
	{ErrInUse, http.StatusConflict, "in_use"},
	{ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
	{ErrNotSupported, http.StatusNotImplemented, "not_supported"},
	{workflow.ErrNotFound, http.StatusNotFound, "workflow_not_found"},
	{workflow.ErrActive, http.StatusConflict, "move_active"},
	{workflow.ErrNotRunning, http.StatusConflict, "not_running"},
	{move.ErrWrongState, http.StatusConflict, "wrong_state"},
	{move.ErrPrecheck, http.StatusConflict, "precheck_failed"},
	{move.ErrAborted, http.StatusConflict, "aborted"},
	{move.ErrLinkNotInSync, http.StatusConflict, "link_not_in_sync"},
	{rollout.ErrWrongState, http.StatusConflict, "rollout_wrong_state"},
	{isolate.ErrGate, http.StatusConflict, "gate_refused"},
	{isolate.ErrWrongState, http.StatusConflict, "isolation_wrong_state"},
	{isolate.ErrCapacity, http.StatusConflict, "capacity_refused"},
	{rollout.ErrNoGateway, http.StatusServiceUnavailable, "no_gateway"},
	{ha.ErrPrecheck, http.StatusConflict, "ha_precheck_failed"},
	{ha.ErrNotSupported, http.StatusNotImplemented, "ha_not_supported"},
	{stack.ErrRunning, http.StatusConflict, "stack_running"},
	{stack.ErrNotRunning, http.StatusNotFound, "stack_not_running"},
	{ErrClusterCheck, http.StatusUnprocessableEntity, "cluster_check_failed"},
}

func statusOf(err error) (int, string) {
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.status, e.code
		}
	}
	return http.StatusInternalServerError, "internal"
}

// APIError is an error answered by the control plane. It unwraps to the
// sentinel its code names, so callers can use errors.Is on client errors.
type APIError struct {
	Status  int            `json:"-"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

func (e *APIError) Error() string { return fmt.Sprintf("%s (%s)", e.Message, e.Code) }

// ErrorCode returns the machine-readable code (the CLI prints it).
func (e *APIError) ErrorCode() string { return e.Code }

// Unwrap returns the sentinel of the error's code, if any.
func (e *APIError) Unwrap() error {
	for _, c := range errorCodes {
		if c.code == e.Code {
			return c.err
		}
	}
	return nil
}
