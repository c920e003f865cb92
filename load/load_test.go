package load

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func testConfig(baseURL string, ledger *bytes.Buffer) Config {
	return Config{
		BaseURL:     baseURL,
		Targets:     []Target{{Tenant: "acme", APIKey: "acme"}, {Tenant: "globex", APIKey: "globex"}},
		Concurrency: 4,
		Ledger:      ledger,
		Seed:        42,
		Retry:       RetryPolicy{BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Deadline: 5 * time.Second},
	}
}

func readAll(t *testing.T, b []byte) []Record {
	t.Helper()
	var recs []Record
	if err := ReadLedger(bytes.NewReader(b), func(r Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatalf("ReadLedger: %v", err)
	}
	return recs
}

// checkLedgerAgainstFake asserts that every acknowledged order exists once
// in the fake with its lines and a status matching acked fulfils and
// cancels, that the fake has no order the ledger does not acknowledge, and
// that every attempt has exactly one outcome.
func checkLedgerAgainstFake(t *testing.T, f *fakeOMS, recs []Record) {
	t.Helper()
	outcomes := map[string]int{}
	acked := map[int64]Record{}
	want := map[int64]string{}
	for _, r := range recs {
		if r.Outcome != OutcomeAttempt {
			outcomes[r.Tenant+"/"+r.Key]++
		}
		if r.Outcome != OutcomeAck {
			continue
		}
		switch r.Op {
		case OpPlaceOrder:
			acked[r.OrderID] = r
			want[r.OrderID] = "reserved"
		case OpFulfil:
			want[r.OrderID] = "fulfilled"
		case OpCancel:
			want[r.OrderID] = "cancelled"
		}
	}
	for _, r := range recs {
		if r.Outcome == OutcomeAttempt && outcomes[r.Tenant+"/"+r.Key] != 1 {
			t.Errorf("key %s has %d outcomes, want 1", r.Key, outcomes[r.Tenant+"/"+r.Key])
		}
	}
	total := 0
	for _, tenant := range []string{"acme", "globex"} {
		orders := f.ordersOf(tenant)
		total += len(orders)
		for id, o := range orders {
			a, ok := acked[id]
			if !ok {
				t.Errorf("fake has order %d of %s that the ledger does not acknowledge", id, tenant)
				continue
			}
			if a.Tenant != tenant || !slices.Equal(a.Lines, o.Lines) || o.Status != want[id] {
				t.Errorf("order %d: fake %s %+v %s, ledger %s %+v %s", id, tenant, o.Lines, o.Status, a.Tenant, a.Lines, want[id])
			}
		}
	}
	if total != len(acked) {
		t.Errorf("fake has %d orders, ledger acknowledges %d", total, len(acked))
	}
}

// setUpFake starts a fake OMS and runs Setup against it for acme and globex.
func setUpFake(t *testing.T, opts SetupOptions) (*fakeOMS, Config, *bytes.Buffer, Catalog) {
	t.Helper()
	f, srv := newFakeOMS(t)
	ledger := &bytes.Buffer{}
	cfg := testConfig(srv.URL, ledger)
	cat, err := Setup(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	return f, cfg, ledger, cat
}

func TestRun_MixAgainstFake(t *testing.T) {
	f, cfg, ledger, cat := setUpFake(t, SetupOptions{Products: 3, Locations: 2, Stock: 20})
	ctx := context.Background()
	if got := cat["acme"]; len(got.Products) != 3 || len(got.Locations) != 2 {
		t.Fatalf("catalog of acme = %+v", got)
	}
	disc, err := Discover(ctx, cfg)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if !slices.Equal(disc["globex"].Products, cat["globex"].Products) || !slices.Equal(disc["globex"].Locations, cat["globex"].Locations) {
		t.Fatalf("Discover = %+v, Setup = %+v", disc["globex"], cat["globex"])
	}
	cfg.Requests = 400
	var progress int
	sum, err := Run(ctx, cfg, cat, func(Stats) { progress++ })
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if sum.Requests != 400 || sum.Acknowledged != 400 || sum.Failures != 0 {
		t.Fatalf("requests %d acknowledged %d failures %v, want 400/400/0", sum.Requests, sum.Acknowledged, sum.FailuresByCode)
	}
	if sum.Refused == 0 || sum.AckedByOp["place_order"] == 0 || sum.AckedByOp["read"] == 0 || sum.AckedByOp["fulfil"]+sum.AckedByOp["cancel"] == 0 {
		t.Fatalf("mix not exercised: refused %d, by op %v", sum.Refused, sum.AckedByOp)
	}
	if progress == 0 || sum.Latency.Max <= 0 || sum.Latency.P50 > sum.Latency.P99 || sum.Latency.P99 > sum.Latency.Max {
		t.Fatalf("progress calls %d, latency %+v", progress, sum.Latency)
	}
	recs := readAll(t, ledger.Bytes())
	stocked := 0
	for _, r := range recs {
		if r.Op == OpStock && r.Outcome == OutcomeAck && r.OnHand != nil && *r.OnHand == 20 {
			stocked++
		}
	}
	if stocked != 2*3*2 {
		t.Fatalf("ledger has %d stock acks, want 12", stocked)
	}
	checkLedgerAgainstFake(t, f, recs)
}

func TestRun_RetriesWithSameKey(t *testing.T) {
	f, cfg, ledger, cat := setUpFake(t, SetupOptions{Products: 3, Locations: 1, Stock: 1000})
	ctx := context.Background()
	// Every write is refused once with 503 (a paused tenant); every order
	// is then applied but its answer lost, so its third attempt must be a
	// replay of the first result.
	f.fault = func(r *http.Request, attempt int) (int, string, bool) {
		if r.Header.Get(HeaderIdempotencyKey) == "" {
			return 0, "", false
		}
		if attempt == 1 {
			return http.StatusServiceUnavailable, "0", false
		}
		return 0, "", attempt == 2 && r.URL.Path == "/v1/orders"
	}
	cfg.Requests = 200
	cfg.Mix = Mix{PlaceOrder: 0.7, FulfilCancel: 0.3}
	sum, err := Run(ctx, cfg, cat, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if sum.Failures != 0 || sum.Acknowledged != 200 {
		t.Fatalf("acknowledged %d, failures %v; want 200, none", sum.Acknowledged, sum.FailuresByCode)
	}
	placed := sum.AckedByOp["place_order"]
	writes := placed + sum.AckedByOp["fulfil"] + sum.AckedByOp["cancel"]
	// The lost answers may be retried by net/http itself (it replays a
	// request carrying an Idempotency-Key on a connection closed before the
	// answer), so only the 503s are sure to count; the server's count of
	// attempts per key below proves the same key was sent every time.
	if sum.Retries < writes {
		t.Fatalf("retries %d, want at least %d (one per write)", sum.Retries, writes)
	}
	if sum.Replays != placed {
		t.Fatalf("replays %d, want one per order (%d)", sum.Replays, placed)
	}
	recs := readAll(t, ledger.Bytes())
	f.mu.Lock()
	for _, r := range recs {
		if r.Outcome == OutcomeAck && r.Op == OpPlaceOrder && f.attempts[r.Tenant+"/"+r.Key] < 3 {
			t.Errorf("order key %s seen %d times by the server, want 3 (same key on every retry)", r.Key, f.attempts[r.Tenant+"/"+r.Key])
		}
	}
	f.mu.Unlock()
	checkLedgerAgainstFake(t, f, recs)
}

func TestRun_NeverSucceedsIsFailureByCode(t *testing.T) {
	f, cfg, ledger, cat := setUpFake(t, SetupOptions{Products: 2, Locations: 1})
	ctx := context.Background()
	f.fault = func(r *http.Request, _ int) (int, string, bool) {
		if r.URL.Path == "/v1/orders" && r.Method == http.MethodPost {
			return http.StatusServiceUnavailable, "", false
		}
		return 0, "", false
	}
	cfg.Requests = 6
	cfg.Concurrency = 2
	cfg.Mix = Mix{PlaceOrder: 1}
	cfg.Retry.Deadline = 150 * time.Millisecond
	sum, err := Run(ctx, cfg, cat, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if sum.Failures != 6 || sum.FailuresByCode["503 tenant_unavailable"] != 6 || sum.Acknowledged != 0 || sum.Retries == 0 {
		t.Fatalf("failures %d %v, acknowledged %d, retries %d", sum.Failures, sum.FailuresByCode, sum.Acknowledged, sum.Retries)
	}
	if sum.LongestStall < Millis(100*time.Millisecond) {
		t.Fatalf("longest stall %v, want the whole run", sum.LongestStall)
	}
	failed := 0
	for _, r := range readAll(t, ledger.Bytes()) {
		if r.Op == OpPlaceOrder && r.Outcome == OutcomeFailed && r.Error == "503 tenant_unavailable" {
			failed++
		}
	}
	if failed != 6 {
		t.Fatalf("ledger has %d failed orders, want 6", failed)
	}
}

func TestClient_HonoursRetryAfter(t *testing.T) {
	f, srv := newFakeOMS(t)
	f.fault = func(_ *http.Request, attempt int) (int, string, bool) {
		if attempt == 1 {
			return http.StatusServiceUnavailable, "1", false
		}
		return 0, "", false
	}
	retries := 0
	c := &client{base: srv.URL, http: srv.Client(), now: time.Now, onRetry: func() { retries++ },
		policy: RetryPolicy{BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond}.withDefaults()}
	start := time.Now()
	resp, err := c.do(context.Background(), http.MethodPost, "/v1/products", Target{Tenant: "acme", APIKey: "acme"}, "k1", map[string]string{"sku": "a"})
	if err != nil || resp.Status != http.StatusCreated || resp.Attempts != 2 || retries != 1 {
		t.Fatalf("do = %+v, %v, retries %d; want 201 after 2 attempts", resp, err, retries)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("retried after %v, before Retry-After: 1", el)
	}
}

func TestClient_GivesUpAtMaxAttempts(t *testing.T) {
	f, srv := newFakeOMS(t)
	f.fault = func(*http.Request, int) (int, string, bool) { return http.StatusBadGateway, "", false }
	c := &client{base: srv.URL, http: srv.Client(), now: time.Now,
		policy: RetryPolicy{MaxAttempts: 3, BaseBackoff: time.Millisecond}.withDefaults()}
	_, err := c.do(context.Background(), http.MethodGet, "/v1/orders", Target{Tenant: "acme", APIKey: "acme"}, "", nil)
	var re *RequestError
	if !errors.As(err, &re) || re.Attempts != 3 || re.Code() != "502 tenant_unavailable" {
		t.Fatalf("do error = %v, want a RequestError after 3 attempts with 502", err)
	}
}

func TestRun_ConnectionRefusedIsTransportFailure(t *testing.T) {
	_, srv := newFakeOMS(t)
	url := srv.URL
	srv.Close()
	cfg := testConfig(url, &bytes.Buffer{})
	cfg.Requests, cfg.Concurrency, cfg.Mix = 2, 1, Mix{Read: 1}
	cfg.Retry.Deadline = 50 * time.Millisecond
	sum, err := Run(context.Background(), cfg, Catalog{"acme": {Products: []int64{1}, Locations: []int64{1}}, "globex": {Products: []int64{1}, Locations: []int64{1}}}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if sum.FailuresByCode[CodeTransport]+sum.FailuresByCode[CodeDeadline] != 2 {
		t.Fatalf("failures %v, want 2 transport or deadline", sum.FailuresByCode)
	}
}

func TestConfig_Validate(t *testing.T) {
	ok := Config{BaseURL: "http://x", Targets: []Target{{Tenant: "acme", APIKey: "k"}}}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"valid", func(*Config) {}, true},
		{"no url", func(c *Config) { c.BaseURL = "" }, false},
		{"no targets", func(c *Config) { c.Targets = nil }, false},
		{"bad tenant", func(c *Config) { c.Targets = []Target{{Tenant: "Acme;", APIKey: "k"}} }, false},
		{"no key", func(c *Config) { c.Targets = []Target{{Tenant: "acme"}} }, false},
		{"no key, own authorization", func(c *Config) {
			c.Targets = []Target{{Tenant: "acme"}}
			c.Authorize = func(*http.Request, Target) {}
		}, true},
		{"twice", func(c *Config) { c.Targets = append(c.Targets, c.Targets[0]) }, false},
		{"negative rate", func(c *Config) { c.Rate = -1 }, false},
		{"negative mix", func(c *Config) { c.Mix.Read = -1 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			c.Targets = slices.Clone(ok.Targets)
			tc.mod(&c)
			err := c.Validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestHistogram_Quantile(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.Quantile(tc.q)
		if got < tc.want*97/100 || got > tc.want*103/100 {
			t.Errorf("quantile(%v) = %v, want %v ±3%%", tc.q, got, tc.want)
		}
	}
}

func TestHistogram_Merge(t *testing.T) {
	var a, b Histogram
	for i := 1; i <= 500; i++ {
		a.Record(time.Duration(i) * time.Millisecond)
		b.Record(time.Duration(500+i) * time.Millisecond)
	}
	a.Merge(&b)
	if a.Count() != 1000 {
		t.Fatalf("count %d, want 1000", a.Count())
	}
	if got := a.Quantile(0.5); got < 485*time.Millisecond || got > 515*time.Millisecond {
		t.Errorf("median %v, want 500ms ±3%%", got)
	}
	if l := a.Latency(); l.Max != Millis(time.Second) {
		t.Errorf("max %v, want 1s", l.Max)
	}
}

// TestClient_Authorize: with Config.Authorize the client sends the
// credentials it sets, and no API key.
func TestClient_Authorize(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	c, err := NewClient(Config{BaseURL: srv.URL, Targets: []Target{{Tenant: "acme"}},
		Authorize: func(r *http.Request, t Target) { r.Header.Set("X-Tenant", t.Tenant) }})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(context.Background(), Target{Tenant: "acme"}, http.MethodGet, "/v1/orders/1", "", nil)
	if err != nil || resp.Status != http.StatusOK {
		t.Fatalf("Do = %+v, %v", resp, err)
	}
	if got.Get("X-Tenant") != "acme" || got.Get("Authorization") != "" {
		t.Fatalf("headers %v: want X-Tenant acme and no Authorization", got)
	}
}

func TestRecorder_LongestStall(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := newRecorder(t0)
	r.ok("read", time.Millisecond, false, false, t0.Add(100*time.Millisecond))
	r.ok("read", time.Millisecond, false, false, t0.Add(900*time.Millisecond))
	r.failed("503", time.Millisecond)
	r.ok("read", time.Millisecond, false, false, t0.Add(1000*time.Millisecond))
	s := r.snapshot(t0.Add(1200 * time.Millisecond))
	if s.LongestStall != Millis(800*time.Millisecond) || s.LongestStallAt != Millis(100*time.Millisecond) {
		t.Fatalf("stall %v at %v, want 800ms at 100ms", s.LongestStall, s.LongestStallAt)
	}
	if s.Requests != 4 || s.Acknowledged != 3 || s.Failures != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestReadLedger_NamesBadLine(t *testing.T) {
	in := `{"op":"stock","outcome":"ack","tenant":"acme"}` + "\n\nnot json\n"
	err := ReadLedger(bytes.NewBufferString(in), func(Record) error { return nil })
	var le *LedgerError
	if !errors.As(err, &le) || le.Line != 3 || !errors.Is(err, ErrLedgerSyntax) {
		t.Fatalf("ReadLedger = %v, want syntax error on line 3", err)
	}
}

func TestReadTargets(t *testing.T) {
	want := []Target{{Tenant: "acme", APIKey: "k1"}, {Tenant: "globex", APIKey: "k=2"}}
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"lines", "# targets\nacme=k1\n\n  globex=k=2  \n", true},
		{"json", `[{"tenant":"acme","api_key":"k1"},{"tenant":"globex","api_key":"k=2"}]`, true},
		{"line without key", "acme=\n", false},
		{"line without =", "acme\n", false},
		{"bad json", `[{"tenant":`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadTargets(strings.NewReader(tc.in))
			if !tc.ok {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("ReadTargets = %v, %v; want ErrInvalidConfig", got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("ReadTargets = %v, %v; want %v", got, err, want)
			}
		})
	}
}
