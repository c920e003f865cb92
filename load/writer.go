package load

import (
	"context"
	"fmt"
	"net/http"
	"slices"
)

// Refusal codes: definite answers that nothing was applied.
const (
	CodeInsufficientStock = "insufficient_stock"
	CodeInvalidState      = "invalid_state"
)

// writer sends writes and records them in the ledger: an attempt before
// the first send, then the ack, refusal or failure.
type writer struct {
	c      *client
	ledger *Ledger
	cfg    Config
}

func newClient(cfg Config, rec *recorder) *client {
	c := &client{base: cfg.BaseURL, http: cfg.HTTPClient, policy: cfg.Retry, authorize: cfg.Authorize, now: cfg.Now}
	if rec != nil {
		c.onRetry = rec.retry
	}
	return c
}

func newWriter(cfg Config, rec *recorder) *writer {
	return &writer{c: newClient(cfg, rec), ledger: NewLedger(cfg.Ledger), cfg: cfg}
}

func (w *writer) log(t Target, rec Record, o Outcome) error {
	rec.Tenant, rec.Outcome, rec.At = t.Tenant, o, w.cfg.Now().UTC()
	return w.ledger.Write(rec)
}

// write is writeWith without a Response hook.
func (w *writer) write(ctx context.Context, t Target, rec Record, method, path string, body any, ok ...int) (Outcome, error) {
	_, o, err := w.writeWith(ctx, t, rec, method, path, body, nil, ok...)
	return o, err
}

// writeWith sends one write with rec.Key as its Idempotency-Key. A status
// in ok acknowledges it: onAck may read the Response and complete the ack
// record. A 409 with a refusal code is a refusal. Anything else, or giving
// up, is a failure returned as a *RequestError; a ledger write error is
// returned as is.
func (w *writer) writeWith(ctx context.Context, t Target, rec Record, method, path string, body any,
	onAck func(Response, *Record) error, ok ...int) (Response, Outcome, error) {
	if err := w.log(t, rec, OutcomeAttempt); err != nil {
		return Response{}, OutcomeFailed, err
	}
	resp, err := w.c.do(ctx, method, path, t, rec.Key, body)
	switch {
	case err != nil:
	case slices.Contains(ok, resp.Status):
		ack := rec
		if onAck != nil {
			if herr := onAck(resp, &ack); herr != nil {
				err = &RequestError{Method: method, Path: path, Status: resp.Status, APICode: "bad_Response", Attempts: resp.Attempts, Err: herr}
				break
			}
		}
		return resp, OutcomeAck, w.log(t, ack, OutcomeAck)
	case resp.Status == http.StatusConflict && (resp.APICode == CodeInsufficientStock || resp.APICode == CodeInvalidState):
		ref := rec
		ref.Error = resp.APICode
		return resp, OutcomeRefused, w.log(t, ref, OutcomeRefused)
	default:
		err = &RequestError{Method: method, Path: path, Status: resp.Status, APICode: resp.APICode, Attempts: resp.Attempts}
	}
	failed := rec
	failed.Error = failureCode(err)
	if lerr := w.log(t, failed, OutcomeFailed); lerr != nil {
		return resp, OutcomeFailed, lerr
	}
	return resp, OutcomeFailed, err
}

func failureCode(err error) string {
	if re, ok := err.(*RequestError); ok {
		return re.Code()
	}
	return fmt.Sprint(err)
}
