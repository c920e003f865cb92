package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"tenantry/check"
	"tenantry/load"
	"tenantry/platform"
	"tenantry/registry"
	"tenantry/stack"
	"tenantry/tenantsig"
)

// plat is the one platform every test of the package runs against. Tests
// use their own tenants and stacks, so they do not depend on each other.
var plat *platform.Running

// tenantryBin is the tenantry binary built for the tests; tmpDir is the
// tests' directory, reachable by the PostgreSQL user.
var tenantryBin, tmpDir string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tmp, err := os.MkdirTemp("", "tenantry-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	tmpDir = tmp
	// PostgreSQL runs as an unprivileged user: it must reach its data.
	if err := os.Chmod(tmp, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	bin := filepath.Join(tmp, "tenantry")
	tenantryBin = bin
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "tenantry/cmd/tenantry")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build tenantry: %v\n%s", err, out)
		return 1
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	started := time.Now()
	r, err := platform.Run(ctx, platform.Options{Dir: filepath.Join(tmp, "platform"), Binary: bin, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start platform:", err)
		return 1
	}
	defer r.Close(context.Background())
	if err := r.StartApps(ctx, platform.AppOptions{Instances: 2}); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start apps:", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: platform up in %v (api %s, gateway %s)\n", time.Since(started).Round(time.Millisecond), r.APIURL, r.GatewayURL)
	}
	plat = r
	return m.Run()
}

// testContext is a context bounded by the test's deadline, or a minute.
func testContext(t *testing.T) context.Context {
	t.Helper()
	dl, ok := t.Deadline()
	if !ok || time.Until(dl) > time.Minute {
		dl = time.Now().Add(time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	t.Cleanup(cancel)
	return ctx
}

// newTenant creates a tenant on the pooled alias and returns it as a load
// target.
func newTenant(t *testing.T, id string) load.Target {
	t.Helper()
	nt, err := plat.Service.CreateTenant(testContext(t), id, platform.PooledAlias)
	if err != nil {
		t.Fatalf("create tenant %s: %v", id, err)
	}
	return load.Target{Tenant: id, APIKey: nt.APIKey}
}

// deployStack deploys a stack of n instances and stops it when the test
// ends.
func deployStack(t *testing.T, name string, n int) registry.Stack {
	t.Helper()
	st, err := plat.Stacks.Deploy(testContext(t), stack.Spec{Name: name, Version: "e2e", Instances: n})
	if err != nil {
		t.Fatalf("deploy stack %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := plat.Stacks.Stop(context.Background(), name); err != nil {
			t.Errorf("stop stack %s: %v", name, err)
		}
	})
	return st
}

// setRoute points tenant (registry.DefaultRoute for the default route) at
// one stack and returns once the gateway routes by it.
func setRoute(ctx context.Context, tenant, stackName string) error {
	rt := registry.Route{Tenant: tenant, Backends: []registry.Backend{{Stack: stackName, Weight: 100}}}
	if err := plat.Store.SetRoute(ctx, rt, 0); err != nil {
		return fmt.Errorf("set route of %q to %s: %w", tenant, stackName, err)
	}
	return syncGateway(ctx)
}

// syncGateway returns once the gateway's routing table is built from the
// registry's current version (its /healthz reports that version).
func syncGateway(ctx context.Context) error { return plat.WaitGateway(ctx) }

// waitServed returns once every instance of the named stacks serves every
// tenant: each OMS process follows the registry on its own, and one that
// has not yet seen a new tenant answers 404 tenant_not_found.
func waitServed(ctx context.Context, tenants []load.Target, stacks ...string) error {
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		return err
	}
	for _, name := range stacks {
		st, ok := snap.Stacks[name]
		if !ok {
			return fmt.Errorf("stack %s: %w", name, registry.ErrNotFound)
		}
		for _, in := range st.Instances {
			for _, tg := range tenants {
				what := fmt.Sprintf("instance %s of stack %s serving tenant %s", in.URL, name, tg.Tenant)
				err := poll(ctx, what, func() (bool, error) {
					req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.URL+"/v1/orders?limit=1", nil)
					if err != nil {
						return false, err
					}
					tenantsig.SignRequest(req, stackKey(name), tg.Tenant, name, time.Now())
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
		}
	}
	return nil
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
			return fmt.Errorf("wait for %s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// checkLedger runs the strict checker over a load ledger against the
// tenants' current databases and fails the test on any violation.
func checkLedger(t *testing.T, ledger []byte) *check.Report {
	t.Helper()
	ctx := testContext(t)
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dbs := &check.RegistryDatabases{Snapshot: snap, Credentials: plat.Vault}
	defer dbs.Close()
	rep, err := check.Check(ctx, bytes.NewReader(ledger), dbs.Get, check.Options{})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if !rep.OK {
		for _, v := range rep.Violations {
			t.Error(v)
		}
		t.Fatalf("check: %d violations", len(rep.Violations)+rep.Omitted)
	}
	if rep.Unresolved != 0 {
		t.Errorf("check: %d writes were attempted but never resolved", rep.Unresolved)
	}
	return rep
}

// gatewayCounts reads the gateway's request and 5xx counters by stack and
// tenant from its /metrics (on the admin listener).
type gatewayCounts struct {
	requests map[[2]string]float64 // {stack, tenant}
	errors   map[[2]string]float64
}

var (
	metricLine = regexp.MustCompile(`^tenantry_gateway_(requests_total|responses_5xx_total)\{([^}]*)\} (\S+)$`)
	labelPair  = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

func readGatewayCounts(t *testing.T) gatewayCounts {
	t.Helper()
	resp, err := http.Get(plat.GatewayAdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	gc := gatewayCounts{requests: map[[2]string]float64{}, errors: map[[2]string]float64{}}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			labels[p[1]] = p[2]
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		k := [2]string{labels["stack"], labels["tenant"]}
		if m[1] == "requests_total" {
			gc.requests[k] += v
		} else {
			gc.errors[k] += v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return gc
}

// since returns the counts of gc minus those of before.
func (gc gatewayCounts) since(before gatewayCounts) gatewayCounts {
	d := gatewayCounts{requests: map[[2]string]float64{}, errors: map[[2]string]float64{}}
	for k, v := range gc.requests {
		if n := v - before.requests[k]; n != 0 {
			d.requests[k] = n
		}
	}
	for k, v := range gc.errors {
		if n := v - before.errors[k]; n != 0 {
			d.errors[k] = n
		}
	}
	return d
}

// progress hands the latest load stats from load.Run's progress callback
// to a goroutine that acts on them, without ever blocking the run.
type progress struct{ ch chan load.Stats }

func newProgress() *progress { return &progress{ch: make(chan load.Stats, 1)} }

// report is the load.Run callback: it leaves only the latest stats.
func (p *progress) report(s load.Stats) {
	for {
		select {
		case p.ch <- s:
			return
		default:
		}
		select {
		case <-p.ch:
		default:
		}
	}
}

// waitAcks returns the first stats with at least n acknowledged requests,
// or false when done closes first.
func (p *progress) waitAcks(n int64, done <-chan struct{}) (load.Stats, bool) {
	for {
		select {
		case s := <-p.ch:
			if s.Acknowledged >= n {
				return s, true
			}
		case <-done:
			return load.Stats{}, false
		}
	}
}

// sampleLoad is load on the local platform's sample tenant (2 products at
// 1 location stocked first), running until end.
type sampleLoad struct {
	p    *progress
	stop chan struct{}
	ran  chan struct{} // closed when load.Run returns
	sum  load.Summary
	err  error
}

func startSampleLoad(t *testing.T, ctx context.Context, st *platform.State, rate float64, d time.Duration) *sampleLoad {
	t.Helper()
	l := &sampleLoad{p: newProgress(), stop: make(chan struct{}), ran: make(chan struct{})}
	cfg := load.Config{BaseURL: st.GatewayURL, Targets: []load.Target{{Tenant: platform.SampleTenant, APIKey: st.SampleAPIKey}},
		Rate: rate, Concurrency: 4, Duration: d, Stop: l.stop, Seed: time.Now().UnixNano()}
	cat, err := load.Setup(ctx, cfg, load.SetupOptions{Products: 2, Locations: 1, Stock: 100000})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(l.ran)
		l.sum, l.err = load.Run(ctx, cfg, cat, l.p.report)
	}()
	return l
}

// acks waits until at least n requests were acknowledged in all.
func (l *sampleLoad) acks(t *testing.T, n int64) {
	t.Helper()
	if _, ok := l.p.waitAcks(n, l.ran); !ok {
		t.Fatalf("load ended before %d acknowledged requests: %v", n, l.err)
	}
}

// end stops the load and returns its stats.
func (l *sampleLoad) end(t *testing.T) load.Stats {
	t.Helper()
	close(l.stop)
	<-l.ran
	if l.err != nil {
		t.Fatal(l.err)
	}
	return l.sum.Stats
}

// drain discards the response body so the connection is reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
