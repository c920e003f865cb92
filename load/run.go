package load

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoCatalog is returned by Run when a target has no products or locations.
var ErrNoCatalog = errors.New("no catalog for tenant")

// Summary is the result of a run; it encodes as one JSON object.
type Summary struct {
	Tenants     []string `json:"tenants"`
	Rate        float64  `json:"rate"`
	Concurrency int      `json:"concurrency"`
	Seed        int64    `json:"seed"`
	Stats
}

// Run drives the workload until cfg.Duration passes or cfg.Requests have
// been issued (whichever first), then waits for in-flight requests, which
// keep their own deadline. onProgress, if set, gets the stats about once a
// second from one goroutine. Run returns the summary, and an error only
// when the run could not go on (invalid config, ledger write error) or ctx
// was cancelled; the summary is valid either way.
func Run(ctx context.Context, cfg Config, cat Catalog, onProgress func(Stats)) (Summary, error) {
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}
	if cfg.Duration == 0 && cfg.Requests == 0 {
		return Summary{}, fmt.Errorf("%w: duration or requests is required", ErrInvalidConfig)
	}
	cfg = cfg.withDefaults()
	r, err := newRunner(cfg, cat)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{Rate: cfg.Rate, Concurrency: cfg.Concurrency, Seed: cfg.Seed}
	for _, t := range r.tenants {
		sum.Tenants = append(sum.Tenants, t.target.Tenant)
	}
	sum.Stats, err = r.run(ctx, onProgress)
	return sum, err
}

// tenantState is what the workers share about one tenant: its recent
// orders (for reads) and its reserved orders nobody is fulfilling or
// cancelling right now.
type tenantState struct {
	target   Target
	cat      TenantCatalog
	mu       sync.Mutex
	recent   []int64
	reserved []int64
}

const recentOrders = 64

func (ts *tenantState) placed(id int64, reserved bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.recent) == recentOrders {
		ts.recent = ts.recent[1:]
	}
	ts.recent = append(ts.recent, id)
	if reserved {
		ts.reserved = append(ts.reserved, id)
	}
}

// takeReserved removes and returns a reserved order, oldest first.
func (ts *tenantState) takeReserved() (int64, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.reserved) == 0 {
		return 0, false
	}
	id := ts.reserved[0]
	ts.reserved = ts.reserved[1:]
	return id, true
}

func (ts *tenantState) recentOrder(rng *mrand.Rand) (int64, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.recent) == 0 {
		return 0, false
	}
	return ts.recent[rng.IntN(len(ts.recent))], true
}

type runner struct {
	cfg     Config
	tenants []*tenantState
	rec     *recorder
	w       *writer
	runID   string
	end     time.Time
	issued  atomic.Int64
	pace    sync.Mutex
	next    time.Time
	stop    chan struct{}
	stopped sync.Once
	errMu   sync.Mutex
	err     error
}

func newRunner(cfg Config, cat Catalog) (*runner, error) {
	r := &runner{cfg: cfg, runID: rand.Text()[:10], stop: make(chan struct{})}
	for _, t := range cfg.Targets {
		tc := cat[t.Tenant]
		if len(tc.Products) == 0 || len(tc.Locations) == 0 {
			return nil, fmt.Errorf("%w %s", ErrNoCatalog, t.Tenant)
		}
		r.tenants = append(r.tenants, &tenantState{target: t, cat: tc})
	}
	return r, nil
}

func (r *runner) run(ctx context.Context, onProgress func(Stats)) (Stats, error) {
	start := r.cfg.Now()
	r.rec = newRecorder(start)
	r.w = newWriter(r.cfg, r.rec)
	r.next = start
	if r.cfg.Duration > 0 {
		r.end = start.Add(r.cfg.Duration)
	}
	var wg sync.WaitGroup
	for i := range r.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(ctx, i)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			st := r.rec.snapshot(r.cfg.Now())
			if onProgress != nil {
				onProgress(st)
			}
			r.errMu.Lock()
			defer r.errMu.Unlock()
			if r.err == nil && ctx.Err() != nil {
				return st, fmt.Errorf("load run: %w", ctx.Err())
			}
			return st, r.err
		case <-tick.C:
			if onProgress != nil {
				onProgress(r.rec.snapshot(r.cfg.Now()))
			}
		}
	}
}

// abort stops the run for a reason that is not the workload's (a ledger
// write error).
func (r *runner) abort(err error) {
	r.errMu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.errMu.Unlock()
	r.stopped.Do(func() { close(r.stop) })
}

// admit waits for the next request slot; false ends the worker.
func (r *runner) admit(ctx context.Context) bool {
	if r.cfg.Requests > 0 && r.issued.Add(1) > int64(r.cfg.Requests) {
		return false
	}
	select {
	case <-r.cfg.Stop:
		return false
	default:
	}
	now := r.cfg.Now()
	if !r.end.IsZero() && !now.Before(r.end) {
		return false
	}
	wait := time.Duration(0)
	if r.cfg.Rate > 0 {
		r.pace.Lock()
		slot := r.next
		if slot.Before(now) {
			slot = now
		}
		r.next = slot.Add(time.Duration(float64(time.Second) / r.cfg.Rate))
		r.pace.Unlock()
		if !r.end.IsZero() && !slot.Before(r.end) {
			return false
		}
		wait = slot.Sub(now)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-r.stop:
		return false
	case <-r.cfg.Stop:
		return false
	case <-t.C:
		return true
	}
}

func (r *runner) worker(ctx context.Context, id int) {
	rng := mrand.New(mrand.NewPCG(uint64(r.cfg.Seed), uint64(id)))
	m := r.cfg.Mix
	total := m.PlaceOrder + m.Read + m.FulfilCancel
	for seq := 0; r.admit(ctx); seq++ {
		ts := r.tenants[rng.IntN(len(r.tenants))]
		key := fmt.Sprintf("%s-%d-%d", r.runID, id, seq)
		var err error
		switch x := rng.Float64() * total; {
		case x < m.PlaceOrder:
			err = r.placeOrder(ctx, rng, ts, key)
		case x < m.PlaceOrder+m.Read:
			r.read(ctx, rng, ts)
		default:
			err = r.fulfilOrCancel(ctx, rng, ts, key)
		}
		if err != nil {
			r.abort(err)
			return
		}
	}
}

// finish records a write's outcome in the stats. It returns err only when
// the run must stop (a ledger error).
func (r *runner) finish(ctx context.Context, op Op, started time.Time, resp Response, o Outcome, err error, refusalOK bool) error {
	now := r.cfg.Now()
	lat := now.Sub(started)
	var re *RequestError
	switch {
	case err != nil && !errors.As(err, &re):
		return err
	case err != nil && ctx.Err() != nil:
		r.rec.interrupted()
	case err != nil:
		r.rec.failed(re.Code(), lat)
	case o == OutcomeRefused && !refusalOK:
		r.rec.failed(fmt.Sprintf("%d %s", resp.Status, resp.APICode), lat)
	default:
		r.rec.ok(string(op), lat, o == OutcomeRefused, resp.Replayed, now)
	}
	return nil
}

type orderBody struct {
	ID         int64  `json:"id"`
	Status     string `json:"status"`
	LocationID int64  `json:"location_id"`
	Lines      []Line `json:"lines"`
}

func (r *runner) placeOrder(ctx context.Context, rng *mrand.Rand, ts *tenantState, key string) error {
	loc := ts.cat.Locations[rng.IntN(len(ts.cat.Locations))]
	n := 1 + rng.IntN(min(3, len(ts.cat.Products)))
	lines := make([]Line, 0, n)
	for _, i := range rng.Perm(len(ts.cat.Products))[:n] {
		lines = append(lines, Line{ProductID: ts.cat.Products[i], Quantity: int64(1 + rng.IntN(3))})
	}
	rec := Record{Op: OpPlaceOrder, Key: key, LocationID: loc, Lines: lines}
	body := map[string]any{"location_id": loc, "lines": lines}
	var placed orderBody
	started := r.cfg.Now()
	resp, o, err := r.w.writeWith(ctx, ts.target, rec, http.MethodPost, "/v1/orders", body, func(resp Response, ack *Record) error {
		if err := json.Unmarshal(resp.Body, &placed); err != nil || placed.ID == 0 {
			return fmt.Errorf("order response has no id: %s", resp.Body)
		}
		ack.OrderID, ack.Status = placed.ID, placed.Status
		return nil
	}, http.StatusCreated)
	if o == OutcomeAck {
		ts.placed(placed.ID, placed.Status == "reserved")
	}
	return r.finish(ctx, OpPlaceOrder, started, resp, o, err, true)
}

func (r *runner) fulfilOrCancel(ctx context.Context, rng *mrand.Rand, ts *tenantState, key string) error {
	id, ok := ts.takeReserved()
	if !ok {
		r.read(ctx, rng, ts)
		return nil
	}
	op, verb := OpFulfil, "fulfil"
	if rng.IntN(2) == 0 {
		op, verb = OpCancel, "cancel"
	}
	rec := Record{Op: op, Key: key, OrderID: id}
	started := r.cfg.Now()
	resp, o, err := r.w.writeWith(ctx, ts.target, rec, http.MethodPost, fmt.Sprintf("/v1/orders/%d/%s", id, verb), nil,
		func(resp Response, ack *Record) error {
			var b orderBody
			if err := json.Unmarshal(resp.Body, &b); err != nil {
				return fmt.Errorf("decode order: %w", err)
			}
			ack.Status = b.Status
			return nil
		}, http.StatusOK)
	return r.finish(ctx, op, started, resp, o, err, false)
}

// read gets one of the tenant's recent orders, or lists its orders.
func (r *runner) read(ctx context.Context, rng *mrand.Rand, ts *tenantState) {
	path := "/v1/orders?limit=20"
	if id, ok := ts.recentOrder(rng); ok && rng.IntN(2) == 0 {
		path = fmt.Sprintf("/v1/orders/%d", id)
	} else if rng.IntN(2) == 0 {
		path = "/v1/orders?status=reserved&limit=20"
	}
	started := r.cfg.Now()
	resp, err := r.w.c.do(ctx, http.MethodGet, path, ts.target, "", nil)
	if err == nil && resp.Status != http.StatusOK {
		err = &RequestError{Method: http.MethodGet, Path: path, Status: resp.Status, APICode: resp.APICode, Attempts: resp.Attempts}
	}
	_ = r.finish(ctx, "read", started, resp, OutcomeAck, err, false)
}
