package route

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tenantry/localpg"
	"tenantry/pgtest"
	"tenantry/registry"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fakeSource is a hand-written SnapshotSource: tests publish snapshots.
type fakeSource struct {
	mu   sync.Mutex
	cur  *registry.Snapshot
	subs []chan *registry.Snapshot
}

func (s *fakeSource) Current() *registry.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func (s *fakeSource) Subscribe() (<-chan *registry.Snapshot, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan *registry.Snapshot, 16)
	s.subs = append(s.subs, ch)
	return ch, func() {}
}

func (s *fakeSource) publish(snap *registry.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = snap
	for _, ch := range s.subs {
		ch <- snap
	}
}

// fakeRegistry is a hand-written Registry recording calls in an event log
// shared with the test.
type fakeRegistry struct {
	log *eventLog
	mu  sync.Mutex
	hb  int
}

func (f *fakeRegistry) RegisterRouter(_ context.Context, id string) error {
	f.log.add("register")
	return nil
}

func (f *fakeRegistry) Heartbeat(_ context.Context, id string, _ int64) error {
	f.mu.Lock()
	f.hb++
	f.mu.Unlock()
	return nil
}

func (f *fakeRegistry) heartbeats() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hb
}

func (f *fakeRegistry) AckEpoch(_ context.Context, id, tenant string, epoch int64) error {
	f.log.add(fmt.Sprintf("ack %s %d", tenant, epoch))
	return nil
}

func (f *fakeRegistry) DeregisterRouter(_ context.Context, id string) error {
	f.log.add("deregister")
	return nil
}

type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(e string) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// index returns the position of e in the log, or -1.
func (l *eventLog) index(e string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.events {
		if x == e {
			return i
		}
	}
	return -1
}

// topo builds snapshots; every snap() has a higher version.
type topo struct {
	version  int64
	clusters map[string]*registry.Cluster
	aliases  map[string]*registry.Alias
	tenants  map[string]*registry.Tenant
}

func newTopo() *topo {
	return &topo{clusters: map[string]*registry.Cluster{}, aliases: map[string]*registry.Alias{}, tenants: map[string]*registry.Tenant{}}
}

func (tp *topo) cluster(name string, c *localpg.Cluster) *topo {
	tp.clusters[name] = &registry.Cluster{Name: name, Members: []registry.Member{
		{Name: name + "-1", Host: c.Host, Port: c.Port, Role: registry.RolePrimary}}}
	return tp
}

func (tp *topo) alias(name, cluster, db string) *topo {
	tp.aliases[name] = &registry.Alias{Name: name, Cluster: cluster, Database: db}
	return tp
}

func (tp *topo) tenant(id, alias string, state registry.State, epoch int64) *topo {
	tp.tenants[id] = &registry.Tenant{ID: id, Alias: alias, State: state, Epoch: epoch}
	return tp
}

func (tp *topo) snap() *registry.Snapshot {
	tp.version++
	s := &registry.Snapshot{Version: tp.version, Clusters: map[string]*registry.Cluster{},
		Aliases: map[string]*registry.Alias{}, Tenants: map[string]*registry.Tenant{}}
	for k, v := range tp.clusters {
		s.Clusters[k] = v
	}
	for k, v := range tp.aliases {
		s.Aliases[k] = v
	}
	for k, v := range tp.tenants {
		s.Tenants[k] = v
	}
	return s
}

func password(tenant string) string { return "pw-" + tenant }

func credentials(tenant string) (string, string) { return "t_" + tenant, password(tenant) }

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// mustKV creates a database on c with kv(k, v) holding (1, label), readable
// and writable by every role.
func mustKV(tb testing.TB, c *localpg.Cluster, label string) string {
	tb.Helper()
	db := pgtest.MustDBOn(tb, c)
	mustExec(tb, c, db,
		"CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL)",
		"INSERT INTO kv VALUES (1, "+quoteLiteral(label)+")",
		"GRANT SELECT, INSERT, UPDATE, DELETE ON kv TO PUBLIC")
	return db
}

// mustRole creates the tenant's login role t_<tenant> on c unless it exists
// (benchmarks run their setup once per b.N).
func mustRole(tb testing.TB, c *localpg.Cluster, tenant string) {
	tb.Helper()
	user, pw := credentials(tenant)
	ctx := context.Background()
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", user).Scan(&exists); err != nil {
		tb.Fatal(err)
	}
	if !exists {
		mustExec(tb, c, "postgres", "CREATE ROLE "+pgx.Identifier{user}.Sanitize()+" LOGIN PASSWORD "+quoteLiteral(pw))
	}
}

func mustExec(tb testing.TB, c *localpg.Cluster, db string, stmts ...string) {
	tb.Helper()
	ctx := context.Background()
	conn, err := c.Connect(ctx, db)
	if err != nil {
		tb.Fatalf("connect %s: %v", db, err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			tb.Fatalf("%s: %v", s, err)
		}
	}
}

func newRouter(tb testing.TB, src SnapshotSource, reg Registry, mutate func(*Config)) *Router {
	tb.Helper()
	cfg := Config{Source: src, Credentials: credentials, HeartbeatInterval: 20 * time.Millisecond}
	if reg != nil {
		cfg.Registry = reg
	}
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		tb.Fatalf("new router: %v", err)
	}
	if err := r.Start(context.Background()); err != nil {
		tb.Fatalf("start router: %v", err)
	}
	tb.Cleanup(r.Stop)
	return r
}

// activeTenantRouter is a started router (newRouter, mutate) over one
// cluster whose alias "a" holds kv with label and serves tenant, active,
// through its own login role.
func activeTenantRouter(tb testing.TB, tenant, label string, mutate func(*Config)) *Router {
	tb.Helper()
	c := pgtest.MustCluster(tb)
	db := mustKV(tb, c, label)
	mustRole(tb, c, tenant)
	src := &fakeSource{}
	src.publish(newTopo().cluster("c1", c).alias("a", "c1", db).tenant(tenant, "a", registry.StateActive, 1).snap())
	return newRouter(tb, src, nil, mutate)
}

// readV reads kv's value for k=1 through the router.
func readV(ctx context.Context, r *Router, tenant string) (string, error) {
	var v string
	err := r.ReadTx(ctx, tenant, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT v FROM kv WHERE k = 1").Scan(&v)
	})
	return v, err
}

// eventually polls cond every 5ms until it holds or d passes.
func eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRouter_TxUnknownTenant(t *testing.T) {
	c := pgtest.MustCluster(t)
	db := mustKV(t, c, "a")
	src := &fakeSource{}
	src.publish(newTopo().cluster("c1", c).alias("a", "c1", db).snap())
	r := newRouter(t, src, nil, nil)
	for _, id := range []string{"nobody", "Bad Id!"} {
		_, err := readV(context.Background(), r, id)
		if !errors.Is(err, ErrTenantNotFound) || !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("tenant %q: err = %v, want ErrTenantNotFound wrapping registry.ErrNotFound", id, err)
		}
	}
}

func TestRouter_StartStop(t *testing.T) {
	c := pgtest.MustCluster(t)
	db := mustKV(t, c, "a")
	mustRole(t, c, "life")
	log := &eventLog{}
	reg := &fakeRegistry{log: log}
	src := &fakeSource{}
	src.publish(newTopo().cluster("c1", c).alias("a", "c1", db).tenant("life", "a", registry.StateActive, 1).snap())
	cfg := Config{Source: src, Registry: reg, Credentials: credentials, HeartbeatInterval: 10 * time.Millisecond}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if log.index("register") != 0 {
		t.Fatalf("events %v: want register first", log.all())
	}
	if v, err := readV(context.Background(), r, "life"); err != nil || v != "a" {
		t.Fatalf("read = %q, %v", v, err)
	}
	eventually(t, 5*time.Second, "two heartbeats", func() bool { return reg.heartbeats() >= 2 })
	r.Stop()
	if log.index("deregister") < 0 {
		t.Errorf("events %v: no deregister after Stop", log.all())
	}
	if _, err := readV(context.Background(), r, "life"); !errors.Is(err, ErrRouterStopped) {
		t.Errorf("tx after Stop: err = %v, want ErrRouterStopped", err)
	}
	eventually(t, 5*time.Second, "sessions of t_life closed", func() bool {
		return sessions(t, c, "t_life", "") == 0
	})
}

// sessions counts server sessions of user on c, on database db or ("") any.
func sessions(tb testing.TB, c *localpg.Cluster, user, db string) int {
	tb.Helper()
	ctx := context.Background()
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND (datname = $2 OR $2 = '')", user, db).Scan(&n); err != nil {
		tb.Fatalf("count sessions: %v", err)
	}
	return n
}

func TestRouter_ApplyIgnoresStaleAndAcksUnserved(t *testing.T) {
	log := &eventLog{}
	snap := func(version, epoch int64, state registry.State) *registry.Snapshot {
		return &registry.Snapshot{Version: version,
			Tenants: map[string]*registry.Tenant{"idle": {ID: "idle", Alias: "a", State: state, Epoch: epoch}}}
	}
	r, err := New(Config{Source: registry.StaticSource{Snapshot: snap(1, 1, registry.StateActive)}, Registry: &fakeRegistry{log: log}, Credentials: credentials})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	steps := []struct {
		name        string
		snap        *registry.Snapshot
		wantVersion int64
		wantAck     string // "" for none
	}{
		{"older version ignored", snap(0, 9, registry.StatePaused), 1, ""},
		{"pause of an unserved tenant is acked at once", snap(2, 2, registry.StatePaused), 2, "ack idle 2"},
		{"same version ignored", snap(2, 3, registry.StateActive), 2, ""},
		{"stale epoch in a newer version not acked", snap(3, 1, registry.StateActive), 3, ""},
		{"resume acked", snap(4, 3, registry.StateActive), 4, "ack idle 3"},
	}
	for _, s := range steps {
		before := len(log.all())
		r.apply(s.snap, false)
		r.flushAcks(context.Background())
		if v := r.Snapshot().Version; v != s.wantVersion {
			t.Errorf("%s: version %d, want %d", s.name, v, s.wantVersion)
		}
		got := log.all()[before:]
		switch {
		case s.wantAck == "" && len(got) > 0:
			t.Errorf("%s: acks %v, want none", s.name, got)
		case s.wantAck != "" && (len(got) != 1 || got[0] != s.wantAck):
			t.Errorf("%s: acks %v, want [%s]", s.name, got, s.wantAck)
		}
	}
}

// TestRouter_SessionTimeouts: tenant sessions carry statement_timeout and
// idle_in_transaction_session_timeout, so one tenant's runaway statement or
// forgotten transaction cannot hold a shared server's connections and locks.
func TestRouter_SessionTimeouts(t *testing.T) {
	r := activeTenantRouter(t, "timed", "a", func(cfg *Config) { cfg.StatementTimeout = 250 * time.Millisecond })
	ctx := context.Background()
	var stmt, idle string
	if err := r.ReadTx(ctx, "timed", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')").Scan(&stmt, &idle)
	}); err != nil {
		t.Fatal(err)
	}
	if stmt != "250ms" || idle != "1min" {
		t.Fatalf("statement_timeout %s, idle_in_transaction_session_timeout %s; want 250ms and 1min", stmt, idle)
	}
	err := r.ReadTx(ctx, "timed", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT pg_sleep(5)")
		return err
	})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" { // query_canceled
		t.Fatalf("a 5 s statement: %v, want canceled by statement_timeout", err)
	}
}

// A tenant whose primary cannot be reached (killed, not yet failed over)
// gets a retryable error: nothing was sent.
func TestRouter_UnreachablePrimaryIsRetryable(t *testing.T) {
	c := pgtest.MustCluster(t)
	db := mustKV(t, c, "a")
	port, err := localpg.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dead := *c
	dead.Port = port // nothing listens there
	src := &fakeSource{}
	src.publish(newTopo().cluster("c1", &dead).alias("a", "c1", db).tenant("gone", "a", registry.StateActive, 1).snap())
	r := newRouter(t, src, nil, nil)
	_, err = readV(context.Background(), r, "gone")
	if !errors.Is(err, ErrTenantPaused) {
		t.Fatalf("err = %v, want retryable ErrTenantPaused", err)
	}
}

// TestRouter_FirstTransactionsAtOnce: the first transactions of a tenant on
// a router arrive together while a snapshot swap holds the router (applyMu):
// the one that stores the tenant's state waits to apply the snapshot to it,
// the others find it unapplied and wait at its gate; once the swap is done
// they all run. (They used to find no gate, wait out the whole buffer
// window and fail as paused.)
func TestRouter_FirstTransactionsAtOnce(t *testing.T) {
	r := activeTenantRouter(t, "first", "a", func(cfg *Config) { cfg.BufferWindow = 5 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const workers = 8
	r.applyMu.Lock()
	errs := make(chan error, workers)
	for range workers {
		go func() {
			v, err := readV(ctx, r, "first")
			if err == nil && v != "a" {
				err = fmt.Errorf("read %q, want a", v)
			}
			errs <- err
		}()
	}
	eventually(t, 5*time.Second, "transactions waiting at the unapplied state's gate", func() bool { return r.buffered.Load() > 0 })
	r.applyMu.Unlock()
	for range workers {
		if err := <-errs; err != nil {
			t.Fatalf("a first transaction failed: %v", err)
		}
	}
}
