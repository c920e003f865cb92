package control

import (
	"errors"
	"fmt"
	"net/http"

	"tenantry/registry"
)

// ErrUnauthorized means the admin token was missing or wrong.
var ErrUnauthorized = errors.New("unauthorized")

// ErrUnavailable means a dependency (a database, a cluster) could not be
// reached; the request may be retried.
var ErrUnavailable = errors.New("unavailable")

// errorCodes is the one table that maps errors to HTTP statuses and stable
// codes. The client maps codes back to the same sentinels, so errors.Is works
// across the wire. Order matters: the first match wins.
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
	{ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
	{ErrNotSupported, http.StatusNotImplemented, "not_supported"},
}

// registerCode adds another package's sentinel to the table (the move
// workflow's "already active" error, for instance).
func registerCode(err error, status int, code string) {
	errorCodes = append(errorCodes, struct {
		err    error
		status int
		code   string
	}{err, status, code})
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
