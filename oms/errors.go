package oms

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5/pgconn"
)

// Error codes of the API. They are stable: clients and load generators
// branch on them.
const (
	CodeInvalidJSON          = "invalid_json"
	CodeUnknownField         = "unknown_field"
	CodeTooLarge             = "too_large"
	CodeInvalidRequest       = "invalid_request"
	CodeUnauthorized         = "unauthorized"
	CodeNotFound             = "not_found"
	CodeTenantNotFound       = "tenant_not_found"
	CodeConflict             = "conflict"
	CodeInsufficientStock    = "insufficient_stock"
	CodeInvalidState         = "invalid_state"
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	CodeTenantUnavailable    = "tenant_unavailable"
	CodeInternal             = "internal"
	// CodeInjectedFault answers a request failed on purpose by test-only
	// Faults.
	CodeInjectedFault = "injected_fault"
)

// statusOf is the one table from error code to HTTP status.
var statusOf = map[string]int{
	CodeInvalidJSON:          http.StatusBadRequest,
	CodeInjectedFault:        http.StatusInternalServerError,
	CodeUnknownField:         http.StatusBadRequest,
	CodeTooLarge:             http.StatusRequestEntityTooLarge,
	CodeInvalidRequest:       http.StatusBadRequest,
	CodeUnauthorized:         http.StatusUnauthorized,
	CodeNotFound:             http.StatusNotFound,
	CodeTenantNotFound:       http.StatusNotFound,
	CodeConflict:             http.StatusConflict,
	CodeInsufficientStock:    http.StatusConflict,
	CodeInvalidState:         http.StatusConflict,
	CodeIdempotencyKeyReused: http.StatusUnprocessableEntity,
	CodeTenantUnavailable:    http.StatusServiceUnavailable,
	CodeInternal:             http.StatusInternalServerError,
}

// Error is an API error: a stable code and a message for people. Its HTTP
// status follows from the code.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Status is the HTTP status of e's code.
func (e *Error) Status() int {
	if s, ok := statusOf[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

func apiErr(code, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

func invalid(format string, a ...any) *Error { return apiErr(CodeInvalidRequest, format, a...) }

func notFound(what string, id int64) *Error {
	return apiErr(CodeNotFound, "%s %d not found", what, id)
}

// PostgreSQL error codes the API maps to its own.
const (
	pgUniqueViolation     = "23505"
	pgForeignKeyViolation = "23503"
	pgCheckViolation      = "23514"
)

// toAPIError turns any error from a handler or the DB into the API error the
// client sees. internal reports whether the cause must be logged (its
// details never reach the client).
func (s *Server) toAPIError(err error) (e *Error, internal bool) {
	var mbe *http.MaxBytesError
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &e):
		return e, false
	case errors.As(err, &mbe):
		return apiErr(CodeTooLarge, "request body exceeds %d bytes", mbe.Limit), false
	case s.cfg.Retryable != nil && s.cfg.Retryable(err):
		return apiErr(CodeTenantUnavailable, "tenant temporarily unavailable; retry"), false
	case s.cfg.NotFound != nil && s.cfg.NotFound(err):
		return apiErr(CodeTenantNotFound, "tenant not found"), false
	case errors.As(err, &pe) && pe.Code == pgUniqueViolation:
		return apiErr(CodeConflict, "already exists"), false
	case errors.As(err, &pe) && pe.Code == pgForeignKeyViolation:
		return apiErr(CodeNotFound, "a referenced object does not exist"), false
	case errors.As(err, &pe) && pe.Code == pgCheckViolation:
		return apiErr(CodeConflict, "the change would break a stock rule"), false
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return apiErr(CodeTenantUnavailable, "request cancelled or timed out; retry"), false
	}
	return apiErr(CodeInternal, "internal error"), true
}
