package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of the idempotency protocol.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderReplayed       = "Idempotent-Replayed"
)

// Failure codes for requests that got no HTTP answer to name.
const (
	CodeTransport = "transport"
	CodeDeadline  = "deadline"
)

// RequestError is a request that finally did not succeed: given up after
// retries, or answered with a status the operation does not expect.
type RequestError struct {
	Method, Path string
	// Status and APICode are those of the last answer (0 and "" when the
	// last attempt got no answer).
	Status   int
	APICode  string
	Attempts int
	// Err is the last transport error, if any.
	Err error
}

// Code names the failure for counting: "503 tenant_unavailable", "500",
// "transport" or "deadline".
func (e *RequestError) Code() string {
	switch {
	case e.Status != 0 && e.APICode != "":
		return strconv.Itoa(e.Status) + " " + e.APICode
	case e.Status != 0:
		return strconv.Itoa(e.Status)
	case errors.Is(e.Err, context.DeadlineExceeded):
		return CodeDeadline
	}
	return CodeTransport
}

func (e *RequestError) Error() string {
	msg := fmt.Sprintf("%s %s: %s after %d attempts", e.Method, e.Path, e.Code(), e.Attempts)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *RequestError) Unwrap() error { return e.Err }

// Response is a final answer: a status the caller decides about.
type Response struct {
	Status   int
	APICode  string
	Body     []byte
	Replayed bool
	Attempts int
}

// client sends requests with the retry policy and counts retries.
type client struct {
	base      string
	http      *http.Client
	policy    RetryPolicy
	authorize func(*http.Request, Target)
	now       func() time.Time
	onRetry   func()
}

// do sends one logical request: method path with JSON body (nil for none),
// as target t, with idemKey (empty for reads), retried with the same key on
// retryable failures. It returns the first non-retryable answer or a
// *RequestError when it gives up.
func (c *client) do(ctx context.Context, method, path string, t Target, idemKey string, body any) (Response, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return Response{}, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.policy.Deadline)
	defer cancel()
	fail := &RequestError{Method: method, Path: path}
	for attempt := 1; ; attempt++ {
		fail.Attempts = attempt
		resp, retryAfter, err := c.attempt(ctx, method, path, t, idemKey, payload)
		if err == nil && !retryableStatus(resp.Status) {
			resp.Attempts = attempt
			return resp, nil
		}
		if ctx.Err() != nil {
			// The attempt was cut off by the request's deadline: the last
			// answer seen, if any, names the failure best.
			if fail.Status == 0 {
				fail.Err = errors.Join(err, ctx.Err())
			}
			return Response{}, fail
		}
		fail.Status, fail.APICode, fail.Err = resp.Status, resp.APICode, err
		if c.policy.MaxAttempts > 0 && attempt >= c.policy.MaxAttempts {
			return Response{}, fail
		}
		wait := c.backoff(attempt, retryAfter)
		if dl, ok := ctx.Deadline(); ok && c.now().Add(wait).After(dl) {
			return Response{}, fail
		}
		if c.onRetry != nil {
			c.onRetry()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			fail.Err = errors.Join(fail.Err, ctx.Err())
			return Response{}, fail
		case <-t.C:
		}
	}
}

// attempt sends the request once. A transport error is returned as err; any
// HTTP answer as resp, with the Retry-After it carried.
func (c *client) attempt(ctx context.Context, method, path string, t Target, idemKey string, payload []byte) (Response, time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, c.policy.AttemptTimeout)
	defer cancel()
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(actx, method, c.base+path, rd)
	if err != nil {
		return Response{}, 0, fmt.Errorf("build request: %w", err)
	}
	if c.authorize != nil {
		c.authorize(req, t)
	} else {
		req.Header.Set("Authorization", "Bearer "+t.APIKey)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		req.Header.Set(HeaderIdempotencyKey, idemKey)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return Response{}, 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return Response{}, 0, fmt.Errorf("read response: %w", err)
	}
	resp := Response{Status: res.StatusCode, Body: b, Replayed: res.Header.Get(HeaderReplayed) == "true"}
	if res.StatusCode >= 400 {
		resp.APICode = apiErrorCode(b)
	}
	return resp, retryAfter(res.Header.Get("Retry-After"), c.now()), nil
}

func retryableStatus(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// backoff is full jitter over an exponential ceiling, but never shorter than
// the server's Retry-After.
func (c *client) backoff(attempt int, retryAfter time.Duration) time.Duration {
	ceil := c.policy.BaseBackoff << min(attempt-1, 20)
	if ceil > c.policy.MaxBackoff || ceil <= 0 {
		ceil = c.policy.MaxBackoff
	}
	d := time.Duration(rand.Int64N(int64(ceil)) + 1)
	return max(d, retryAfter)
}

// retryAfter parses a Retry-After header: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// apiErrorCode extracts error.code from {"error":{"code":...}}.
func apiErrorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// Client sends single logical requests the way Run's workers do: with the
// config's retry policy, authorization and HTTP client. It is for callers
// that choose their own requests (the benchmarks); it writes no ledger and
// keeps no stats. It is safe for concurrent use.
type Client struct{ c *client }

// NewClient returns a Client for cfg, which must be valid.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Client{c: newClient(cfg.withDefaults(), nil)}, nil
}

// Do sends method path as target t with body encoded as JSON (nil for
// none) and idemKey as its Idempotency-Key (empty for none), retrying per
// the policy. It returns the first answer that is not retryable, whatever
// its status, or a *RequestError when it gave up.
func (c *Client) Do(ctx context.Context, t Target, method, path, idemKey string, body any) (Response, error) {
	return c.c.do(ctx, method, path, t, idemKey, body)
}
