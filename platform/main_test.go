package platform

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/control"
	"tenantry/load"
	"tenantry/logrepl"
	"tenantry/move"
	"tenantry/provision"
	"tenantry/registry"
	"tenantry/tenantsig"
	"tenantry/workflow"
)

// The move tests share one platform: the pooled cluster, the shared stack
// with two OMS processes, the gateway, and one dedicated cluster whose alias
// every test moves its own tenants to (and back). Moves run on plat.Runner,
// which each test starts and stops itself (MoveOptions.Manual), so that a
// crash test's child worker is the only runner while it owns a move.
var (
	plat *Running
	// testBin is the test binary itself: crash tests run it again as a
	// move worker (see runWorker).
	testBin string
	// tenantryBin is the tenantry binary built for the tests (stack
	// instances, the gateway, control-plane replicas).
	tenantryBin string
)

// dedicatedAlias is the alias on the dedicated cluster the tests move to.
const dedicatedAlias = "dedicated"

// Environment of a crash test's child process.
const (
	envWorker  = "TENANTRY_TEST_MOVE_WORKER" // platform data directory
	envCrashAt = "TENANTRY_TEST_CRASH_AT"    // hook point to stop at
	envMarker  = "TENANTRY_TEST_MARKER"      // file written when stopped there
)

// testMoveOptions are the move options of the platform and of the crash
// tests' workers alike: a short lease so that a killed runner's move is
// taken over within about two seconds, and short bounds for the abort tests.
func testMoveOptions() MoveOptions {
	return MoveOptions{LeaseTTL: 2 * time.Second, Manual: true, Config: move.Config{
		AckTimeout:   time.Second,
		ApplyTimeout: 3 * time.Second,
		// Moves in ready and hypercare check their link this often (a
		// failover of one of their clusters; failover_move_test.go).
		LinkCheckInterval: 2 * time.Second,
		// The tests' tenants are small: every table empty on the target
		// loads before its indexes are built, as a large one does, so
		// that the moves under load and the crash at every step cover it.
		DeferIndexPages: 1,
		Hook:            testHook,
	}}
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(envWorker); dir != "" {
		os.Exit(runWorker(dir))
	}
	flag.Parse()
	os.Exit(runMain(m))
}

// runWorker is the child side of a crash test: a move worker on the
// platform in dir that, at the hook point named by envCrashAt, writes the
// marker file and blocks until it is killed.
func runWorker(dir string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	at, marker := os.Getenv(envCrashAt), os.Getenv(envMarker)
	opts := testMoveOptions()
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Config.Hook = func(ctx context.Context, point string) error {
		if point != at {
			return nil
		}
		if err := os.WriteFile(marker, []byte(point), 0o644); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}
	if err := RunMoveWorker(ctx, dir, opts); err != nil {
		fmt.Fprintln(os.Stderr, "move worker:", err)
		return 1
	}
	return 0
}

func runMain(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // setup only
	defer cancel()
	tmp, err := os.MkdirTemp("", "tenantry-platform-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "platform test:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// PostgreSQL runs as an unprivileged user: it must reach its data.
	if err := os.Chmod(tmp, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "platform test:", err)
		return 1
	}
	if testBin, err = os.Executable(); err != nil {
		fmt.Fprintln(os.Stderr, "platform test:", err)
		return 1
	}
	bin := filepath.Join(tmp, "tenantry")
	tenantryBin = bin
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "tenantry/cmd/tenantry")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "platform test: build tenantry: %v\n%s", err, out)
		return 1
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	started := time.Now()
	r, err := Run(ctx, Options{Dir: filepath.Join(tmp, "platform"), Binary: bin, Moves: testMoveOptions(), Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "platform test: start platform:", err)
		return 1
	}
	defer r.Close(context.Background())
	err = r.StartApps(ctx, AppOptions{Instances: 2})
	if err == nil {
		_, err = r.Service.CreateCluster(ctx, control.CreateClusterRequest{Name: "dedicated-1"})
	}
	if err == nil {
		err = r.Service.CreateAlias(ctx, registry.Alias{Name: dedicatedAlias, Cluster: "dedicated-1", Database: "dedicated"})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "platform test: set up:", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "platform test: platform up in %v\n", time.Since(started).Round(time.Millisecond))
	}
	plat = r
	return m.Run()
}

// testContext is a context bounded by the test's deadline, or d.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	dl, ok := t.Deadline()
	if !ok || time.Until(dl) > d {
		dl = time.Now().Add(d)
	}
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	t.Cleanup(cancel)
	return ctx
}

// runMoves starts the platform's workflow runner until the test ends.
func runMoves(t *testing.T) {
	t.Helper()
	plat.Runner.Start(context.Background())
	t.Cleanup(plat.Runner.Stop)
}

// poll calls cond every 20 ms until it is true or ctx ends.
func poll(ctx context.Context, what string, cond func() (bool, error)) error {
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tenantFixture is a tenant on the pooled alias with a catalog, stock and
// an order history of its own.
type tenantFixture struct {
	target load.Target
	cat    load.TenantCatalog
}

// newTenant creates tenant id on the pooled alias, waits until every OMS
// instance serves it, stocks it through the gateway and gives it a history
// of orders (seeded straight into its database).
func newTenant(t *testing.T, ctx context.Context, id string, orders int) tenantFixture {
	t.Helper()
	return newTenantOn(t, ctx, id, PooledAlias, orders)
}

// newTenantOn is newTenant on another alias.
func newTenantOn(t *testing.T, ctx context.Context, id, alias string, orders int) tenantFixture {
	t.Helper()
	nt, err := plat.Service.CreateTenant(ctx, id, alias)
	if err != nil {
		t.Fatalf("create tenant %s: %v", id, err)
	}
	if err := waitServed(ctx, id); err != nil {
		t.Fatal(err)
	}
	tg := load.Target{Tenant: id, APIKey: nt.APIKey}
	cat, err := load.Setup(ctx, load.Config{BaseURL: plat.GatewayURL, Targets: []load.Target{tg}},
		load.SetupOptions{Products: 3, Locations: 2, Stock: 1_000_000})
	if err != nil {
		t.Fatalf("stock tenant %s: %v", id, err)
	}
	if orders > 0 {
		if err := plat.SeedHistory(ctx, id, orders, cat[id]); err != nil {
			t.Fatalf("seed tenant %s: %v", id, err)
		}
	}
	return tenantFixture{target: tg, cat: cat[id]}
}

// waitServed returns once the gateway and every instance of the shared
// stack serve tenant (each OMS process follows the registry on its own; one
// that has not yet seen a new tenant answers 404).
func waitServed(ctx context.Context, tenant string) error {
	if err := plat.WaitGateway(ctx); err != nil {
		return err
	}
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		return err
	}
	st, ok := snap.Stacks[SharedStack]
	if !ok {
		return fmt.Errorf("stack %s: %w", SharedStack, registry.ErrNotFound)
	}
	for _, in := range st.Instances {
		err := poll(ctx, fmt.Sprintf("instance %s serving tenant %s", in.URL, tenant), func() (bool, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.URL+"/v1/orders?limit=1", nil)
			if err != nil {
				return false, err
			}
			tenantsig.SignRequest(req, tenantsig.StackKey(headerRoot(plat.Local.State), SharedStack), tenant, SharedStack, time.Now())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// loadRun is load running in the background with a ledger.
type loadRun struct {
	ledger string
	stop   context.CancelFunc
	done   chan struct{}
	sum    load.Summary
	err    error
	// progress gets the load's stats about once a second.
	progress chan load.Stats
}

// startLoad runs load across the fixtures at rate requests/s until
// finish; the ledger lives in the test's temporary directory.
func startLoad(t *testing.T, ctx context.Context, rate float64, fs ...tenantFixture) *loadRun {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := load.Config{BaseURL: plat.GatewayURL, Rate: rate, Concurrency: 4, Ledger: f, Seed: time.Now().UnixNano(),
		Duration: time.Hour} // ended by finish
	cat := load.Catalog{}
	for _, fx := range fs {
		cfg.Targets = append(cfg.Targets, fx.target)
		cat[fx.target.Tenant] = fx.cat
	}
	lctx, stop := context.WithCancel(ctx)
	lr := &loadRun{ledger: path, stop: stop, done: make(chan struct{}), progress: make(chan load.Stats, 1)}
	go func() {
		defer close(lr.done)
		defer f.Close()
		lr.sum, lr.err = load.Run(lctx, cfg, cat, func(st load.Stats) {
			select { // keep only the latest
			case <-lr.progress:
			default:
			}
			lr.progress <- st
		})
	}()
	t.Cleanup(func() { stop(); <-lr.done })
	return lr
}

// served waits until the load has had at least n more requests
// acknowledged after the call: the first report after the call is the
// base, a later one must exceed it by n.
func (lr *loadRun) served(t *testing.T, ctx context.Context, n int64) {
	t.Helper()
	select { // a report from before the call is no base
	case <-lr.progress:
	default:
	}
	base := int64(-1)
	for {
		select {
		case st := <-lr.progress:
			if base < 0 {
				base = st.Acknowledged
			} else if st.Acknowledged >= base+n {
				return
			}
		case <-lr.done:
			t.Fatalf("the load ended while waiting for %d requests to be served: %v", n, lr.err)
		case <-ctx.Done():
			t.Fatalf("waiting for %d requests to be served: %v", n, ctx.Err())
		}
	}
}

// finish stops the load and returns its stats; it fails the test on a
// failed request and logs the client's figures.
func (lr *loadRun) finish(t *testing.T) load.Stats {
	t.Helper()
	s := lr.end(t)
	if s.Failures != 0 {
		t.Errorf("load saw %d failed requests: %v", s.Failures, s.FailuresByCode)
	}
	return s
}

// end stops the load, logs the client's figures and returns them; it
// fails the test when the load could not run or acknowledged nothing.
func (lr *loadRun) end(t *testing.T) load.Stats {
	t.Helper()
	lr.stop()
	<-lr.done
	if lr.err != nil && !errors.Is(lr.err, context.Canceled) {
		t.Fatalf("load: %v", lr.err)
	}
	s := lr.sum.Stats
	t.Logf("load: %d requests, %d acknowledged, %d retries, %d failed %v, p99 %v, max %v, longest stall %v",
		s.Requests, s.Acknowledged, s.Retries, s.Failures, s.FailuresByCode, s.Latency.P99, s.Latency.Max, s.LongestStall)
	if s.Acknowledged == 0 {
		t.Errorf("load acknowledged no request")
	}
	return s
}

// check runs the checker on the load's ledger against the databases the
// registry places each tenant on now (every acknowledged write present,
// no duplicate keys, stock conserved).
func (lr *loadRun) check(t *testing.T, ctx context.Context) {
	t.Helper()
	rep, err := plat.CheckLedger(ctx, lr.ledger)
	if err != nil {
		t.Fatalf("checker: %v", err)
	}
	if !rep.OK {
		for _, v := range rep.Violations {
			t.Errorf("checker: %s", v)
		}
		t.Fatalf("checker found %d violations", len(rep.Violations))
	}
	t.Logf("checker: ok, %d orders", rep.Orders)
}

// aliasPool opens an admin pool on alias; closed when the test ends.
func aliasPool(t *testing.T, ctx context.Context, alias string) *pgxpool.Pool {
	t.Helper()
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := snap.AliasEndpoint(alias)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plat.AdminPool(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// placement returns the tenant's placement in the registry.
func placement(t *testing.T, ctx context.Context, tenant string) registry.Tenant {
	t.Helper()
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tn, ok := snap.Tenants[tenant]
	if !ok {
		t.Fatalf("tenant %s not in the registry", tenant)
	}
	return *tn
}

// fenced reports whether the tenant's role is fenced on alias.
func fenced(t *testing.T, ctx context.Context, alias, tenant string) bool {
	t.Helper()
	f, err := provision.IsFenced(ctx, aliasPool(t, ctx, alias), tenant)
	if err != nil {
		t.Fatalf("fence of %s on %s: %v", tenant, alias, err)
	}
	return f
}

// wantServing asserts the tenant is active on alias, its role able to log
// in there, and (when other is not empty) fenced on other.
func wantServing(t *testing.T, ctx context.Context, tenant, alias, other string) {
	t.Helper()
	p := placement(t, ctx, tenant)
	if p.Alias != alias || p.State != registry.StateActive {
		t.Errorf("tenant %s is %s on %s, want active on %s", tenant, p.State, p.Alias, alias)
	}
	if fenced(t, ctx, alias, tenant) {
		t.Errorf("tenant %s is fenced on %s, where it is served", tenant, alias)
	}
	if other != "" && !fenced(t, ctx, other, tenant) {
		t.Errorf("tenant %s is not fenced on %s, the side it is not served from", tenant, other)
	}
}

// finishMove completes a move in hypercare (or cancels one that was
// never promoted or was cut back), waits for it to end and checks that it
// ended so.
func finishMove(t *testing.T, ctx context.Context, id, signal string) *move.Info {
	t.Helper()
	st, err := plat.Moves.Command(ctx, id, signal, true)
	if err != nil {
		t.Fatalf("%s move %s: %v", signal, id, err)
	}
	want := workflow.StatusSucceeded
	if signal == move.SignalCancel {
		want = workflow.StatusCancelled
	}
	if st.Status != want {
		t.Fatalf("%s: move is %s, want %s: %s", signal, st.Status, want, st.Error)
	}
	return st
}

// countRows returns the tenant's rows in every tenant table of alias.
func countRows(t *testing.T, ctx context.Context, alias, tenant string, tables []string) int64 {
	t.Helper()
	n, err := logrepl.CountRows(ctx, aliasPool(t, ctx, alias), tenant, tables)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, c := range n {
		total += c
	}
	return total
}
