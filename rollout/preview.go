package rollout

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"tenantry/gateway"
	"tenantry/jsonapi"
	"tenantry/registry"
)

// Preview sends requests of one tenant to one stack through the gateway's
// preview (gateway.HeaderPreview): the stack answers with no tenant traffic
// routed to it.
type Preview struct {
	GatewayURL string
	APIKey     string
	Stack      string
	HTTP       *http.Client
}

// Response is one answer of a preview request.
type Response struct {
	Status  int
	Body    []byte
	Latency time.Duration
}

// Do sends one request (body as JSON when not nil).
func (p Preview) Do(ctx context.Context, method, path string, body any) (Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Response{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.GatewayURL+path, rd)
	if err != nil {
		return Response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+p.APIKey)
	req.Header.Set(gateway.HeaderPreview, p.Stack)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := p.HTTP.Do(req)
	if err != nil {
		return Response{Latency: time.Since(start)}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return Response{Status: resp.StatusCode, Body: b, Latency: time.Since(start)}, err
}

// probePath is what a probe reads: a tenant's newest order (read-only).
const probePath = "/v1/orders?limit=1"

// Probe sends n read-only requests through the preview, four at a time,
// and returns their outcomes as stack stats: a transport error or a 5xx is
// an error, every probe counts as a request with its latency.
func (p Preview) Probe(ctx context.Context, n int) registry.StackStats {
	st := registry.StackStats{Buckets: make([]int64, registry.LatencyBuckets)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan struct{})
	for range min(4, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				r, err := p.Do(ctx, http.MethodGet, probePath, nil)
				mu.Lock()
				st.Requests++
				if err != nil || r.Status >= 500 {
					st.Errors++
				}
				st.Buckets[registry.LatencyBucket(r.Latency)]++
				mu.Unlock()
			}
		}()
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	return st
}

// CheckResult is the outcome of one smoke check.
type CheckResult struct {
	Name      string  `json:"name"`
	Pass      bool    `json:"pass"`
	Status    int     `json:"status,omitempty"`
	LatencyMs float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

// HTTPCheck is an operator's smoke check: one request through the preview
// and the status it must answer. A file of them (a JSON array) extends the
// built-in suite (`--checks FILE`).
type HTTPCheck struct {
	Name   string          `json:"name"`
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body,omitempty"`
	// Status is the status that passes; 0 means 200.
	Status int `json:"status,omitempty"`
}

// MaxChecks bounds the operator's checks of one suite.
const MaxChecks = 50

// ValidateChecks checks an operator's checks: at most MaxChecks, each named,
// with a method, a canonical path from the root, a JSON body if any, and a
// status from 100 to 599.
func ValidateChecks(cs []HTTPCheck) error {
	if len(cs) > MaxChecks {
		return fmt.Errorf("%w: %d smoke checks, at most %d", registry.ErrInvalid, len(cs), MaxChecks)
	}
	for i, c := range cs {
		bad := func(what string) error {
			return fmt.Errorf("%w: smoke check %d (%q): %s", registry.ErrInvalid, i+1, c.Name, what)
		}
		switch {
		case c.Name == "" || len(c.Name) > 100:
			return bad("a name of 1 to 100 bytes is required")
		case !slices.Contains([]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}, c.Method):
			return bad("method must be GET, POST, PUT, PATCH or DELETE")
		case !strings.HasPrefix(c.Path, "/") || len(c.Path) > 2000 || !jsonapi.CanonicalPath(strings.SplitN(c.Path, "?", 2)[0]):
			return bad("path must be a canonical path from the root")
		case len(c.Body) > 0 && !json.Valid(c.Body):
			return bad("body must be JSON")
		case c.Status != 0 && (c.Status < 100 || c.Status > 599):
			return bad("status must be 100 to 599")
		}
	}
	return nil
}

// Smoke runs the built-in smoke suite through the preview, then the
// operator's checks (extra): create a product, a location, stock, place and
// fulfil an order, read it back, place another and cancel it. A built-in
// check whose input a failed check should have made is reported failed
// too. The entities it creates are the tenant's (named smoke-<random>),
// like any client's.
func (p Preview) Smoke(ctx context.Context, extra []HTTPCheck) []CheckResult {
	run := "smoke-" + randomHex(4)
	var out []CheckResult
	ids := map[string]int64{}
	failed := false
	check := func(name, method, path string, body any, want int, keep string, verify func([]byte) error) {
		res := CheckResult{Name: name}
		defer func() { out = append(out, res) }()
		if failed {
			res.Error = "skipped: an earlier check failed"
			return
		}
		r, err := p.Do(ctx, method, path, body)
		res.Status, res.LatencyMs = r.Status, ms(r.Latency)
		switch {
		case err != nil:
			res.Error = err.Error()
		case r.Status != want:
			res.Error = fmt.Sprintf("status %d, want %d: %s", r.Status, want, bytes.TrimSpace(r.Body))
		default:
			var v struct {
				ID int64 `json:"id"`
			}
			_ = json.Unmarshal(r.Body, &v)
			if keep != "" {
				if v.ID <= 0 {
					res.Error = "answer has no id: " + string(r.Body)
					break
				}
				ids[keep] = v.ID
			}
			if verify != nil {
				if err := verify(r.Body); err != nil {
					res.Error = err.Error()
					break
				}
			}
			res.Pass = true
		}
		if !res.Pass {
			failed = true
		}
	}
	status := func(want string) func([]byte) error {
		return func(b []byte) error {
			var o struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(b, &o); err != nil || o.Status != want {
				return fmt.Errorf("order status %q, want %q", o.Status, want)
			}
			return nil
		}
	}
	check("create product", http.MethodPost, "/v1/products", map[string]any{"sku": run, "name": "smoke test"}, http.StatusCreated, "product", nil)
	check("create location", http.MethodPost, "/v1/locations", map[string]any{"code": run, "name": "smoke test"}, http.StatusCreated, "location", nil)
	order := func() map[string]any {
		return map[string]any{"location_id": ids["location"], "lines": []map[string]any{{"product_id": ids["product"], "quantity": 1}}}
	}
	check("set stock", http.MethodPut, fmt.Sprintf("/v1/inventory/%d/%d", ids["product"], ids["location"]), map[string]any{"on_hand": 10}, http.StatusOK, "", nil)
	check("place order", http.MethodPost, "/v1/orders", order(), http.StatusCreated, "order", nil)
	check("fulfil order", http.MethodPost, fmt.Sprintf("/v1/orders/%d/fulfil", ids["order"]), nil, http.StatusOK, "", status("fulfilled"))
	check("read order back", http.MethodGet, fmt.Sprintf("/v1/orders/%d", ids["order"]), nil, http.StatusOK, "", status("fulfilled"))
	check("place order to cancel", http.MethodPost, "/v1/orders", order(), http.StatusCreated, "cancel", nil)
	check("cancel order", http.MethodPost, fmt.Sprintf("/v1/orders/%d/cancel", ids["cancel"]), nil, http.StatusOK, "", status("cancelled"))
	failed = false // the operator's checks stand on their own
	for _, c := range extra {
		want := c.Status
		if want == 0 {
			want = http.StatusOK
		}
		var body any
		if len(c.Body) > 0 {
			body = c.Body
		}
		check(c.Name, c.Method, c.Path, body, want, "", nil)
		failed = false
	}
	return out
}

// Passed reports whether every check passed.
func Passed(rs []CheckResult) bool {
	for _, r := range rs {
		if !r.Pass {
			return false
		}
	}
	return len(rs) > 0
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
