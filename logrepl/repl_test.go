package logrepl_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/dbconn"
	"tenantry/localpg"
	"tenantry/logrepl"
	"tenantry/pgtest"
	"tenantry/registry"
	"tenantry/tenanttable"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const schema = `
CREATE SEQUENCE orders_id_seq;
CREATE TABLE orders (
	tenant_id text NOT NULL,
	id bigint NOT NULL DEFAULT nextval('orders_id_seq'),
	note text,
	PRIMARY KEY (tenant_id, id));
CREATE TABLE order_lines (
	tenant_id text NOT NULL,
	id bigserial,
	order_id bigint NOT NULL,
	qty int NOT NULL,
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id));
CREATE TABLE settings (id int PRIMARY KEY, v text);`

// tables in creation order; the package must not depend on it.
var tables = []string{"order_lines", "orders"}

// side is one database of a test: a pool and how a subscription reaches it.
type side struct {
	db *pgxpool.Pool
	ep logrepl.Endpoint
}

func mustSide(t *testing.T, c *localpg.Cluster, seed bool) side {
	t.Helper()
	name := pgtest.MustDBOn(t, c)
	s := side{db: pgtest.MustPool(t, c, name), ep: c.Config(name)}
	mustExec(t, s.db, schema)
	if seed {
		for _, tn := range []string{"x", "y"} {
			mustExec(t, s.db, `INSERT INTO orders (tenant_id, note) SELECT $1, 'o' || g FROM generate_series(1, 200) g`, tn+"x")
			mustExec(t, s.db, `INSERT INTO order_lines (tenant_id, order_id, qty) SELECT tenant_id, id, 1 FROM orders, generate_series(1, 3) WHERE tenant_id = $1`, tn+"x")
		}
	}
	return s
}

func mustExec(t *testing.T, db *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, db *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func mustCount(t *testing.T, db *pgxpool.Pool, tenant string) map[string]int64 {
	t.Helper()
	c, err := logrepl.CountRows(context.Background(), db, tenant, tables)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mustClusters starts two clusters, a and b, for links between them.
func mustClusters(t *testing.T) (a, b *localpg.Cluster) {
	t.Helper()
	a, b = pgtest.MustNewCluster(t, "a"), pgtest.MustNewCluster(t, "b")
	for _, c := range []*localpg.Cluster{a, b} {
		// The launcher starts subscription workers at most once per
		// wal_retrieve_retry_interval (5 s); tests start many.
		db := pgtest.MustPool(t, c, "postgres")
		mustExec(t, db, `ALTER SYSTEM SET wal_retrieve_retry_interval = '100ms'`)
		mustExec(t, db, `SELECT pg_reload_conf()`)
	}
	return a, b
}

func mustLSN(t *testing.T, db *pgxpool.Pool) logrepl.LSN {
	t.Helper()
	l, err := logrepl.CurrentLSN(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLink runs the replication mechanics of one move end to end on two
// clusters: forward copy and replication of one tenant only, proof of
// apply, sequences, the reverse link after a flip, cleanup and purge; then
// the failure sentinels on a second move between the same clusters.
func TestLink(t *testing.T) {
	ctx := context.Background()
	ca, cb := mustClusters(t)
	a, b := mustSide(t, ca, true), mustSide(t, cb, false)
	n, err := logrepl.NamesFor("m1")
	if err != nil {
		t.Fatal(err)
	}
	const tenant = "xx"
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("discover", func(t *testing.T) {
		got, err := tenanttable.Names(ctx, a.db)
		if err != nil || fmt.Sprint(got) != "[orders order_lines]" {
			t.Fatalf("tenanttable.Names = %v, %v; want parents first, settings excluded", got, err)
		}
		seqs, err := logrepl.TenantSequences(ctx, a.db, tables)
		if err != nil || fmt.Sprint(seqs) != `["public"."order_lines_id_seq" "public"."orders_id_seq"]` {
			t.Fatalf("TenantSequences = %v, %v", seqs, err)
		}
	})

	step("copy only the tenant", func(t *testing.T) {
		for range 2 { // idempotent
			if err := logrepl.CreatePublication(ctx, a.db, n.Forward.Publication, tenant, tables); err != nil {
				t.Fatal(err)
			}
			if _, err := logrepl.CreateSlot(ctx, a.db, n.Forward.Slot); err != nil {
				t.Fatal(err)
			}
			if err := logrepl.CreateSubscription(ctx, b.db, n.Forward.Subscription, a.ep, n.Forward.Publication, logrepl.SubOpts{CopyData: true, Enabled: true}); err != nil {
				t.Fatal(err)
			}
		}
		var seen []logrepl.TableSync
		if err := logrepl.WaitSynced(ctx, b.db, n.Forward.Subscription, tenant, func(p []logrepl.TableSync) { seen = p }); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(seen) != "[{order_lines r 600 0 0} {orders r 200 0 0}]" {
			t.Errorf("last progress = %v", seen)
		}
		if got := mustCount(t, b.db, "yx"); got["orders"]+got["order_lines"] != 0 {
			t.Errorf("other tenant copied: %v", got)
		}
	})

	step("changes replicate for the tenant only", func(t *testing.T) {
		mustExec(t, a.db, `INSERT INTO orders (tenant_id, note) VALUES ('xx', 'new'), ('yx', 'new')`)
		mustExec(t, a.db, `UPDATE orders SET note = 'changed' WHERE id % 10 = 0`)
		mustExec(t, a.db, `DELETE FROM order_lines WHERE id % 7 = 0`)
		lsn := mustLSN(t, a.db)
		start := time.Now()
		if err := logrepl.WaitApplied(ctx, a.db, b.db, n.Forward.Subscription, n.Forward.Slot, lsn, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("applied after writes in %v", time.Since(start))
		src, dst, diff, err := logrepl.CountBoth(ctx, a.db, b.db, tenant, tables)
		if err != nil || diff != nil {
			t.Fatalf("CountBoth: %v %v %v %v", src, dst, diff, err)
		}
		if got := count(t, b.db, `SELECT count(*) FROM orders WHERE note = 'changed'`); got != count(t, a.db, `SELECT count(*) FROM orders WHERE note = 'changed' AND tenant_id = 'xx'`) || got == 0 {
			t.Errorf("updates on target: %d", got)
		}
		if got := count(t, b.db, `SELECT count(*) FROM orders WHERE tenant_id <> 'xx'`); got != 0 {
			t.Errorf("other tenant rows on target: %d", got)
		}
	})

	step("applied proof without tenant traffic", func(t *testing.T) {
		// Only the other tenant writes: nothing is sent for these
		// transactions, the origin's progress stays behind; the keepalive
		// must still prove the LSN applied.
		mustExec(t, a.db, `INSERT INTO orders (tenant_id, note) VALUES ('yx', 'other')`)
		lsn := mustLSN(t, a.db)
		start := time.Now()
		if err := logrepl.WaitApplied(ctx, a.db, b.db, n.Forward.Subscription, n.Forward.Slot, lsn, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		st, err := logrepl.Status(ctx, b.db, n.Forward.Subscription)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("applied without traffic in %v (origin %s, keepalive %s, lsn %s)", time.Since(start), st.OriginLSN, st.LatestEndLSN, lsn)
		if st.OriginLSN >= lsn {
			t.Errorf("origin progress %s reached %s without tenant traffic", st.OriginLSN, lsn)
		}
		lag, err := logrepl.Lag(ctx, a.db, n.Forward.Slot)
		if err != nil || lag < 0 {
			t.Errorf("Lag = %d, %v", lag, err)
		}
	})

	step("sequences", func(t *testing.T) {
		const gap = 1000
		srcMax := count(t, a.db, `SELECT max(id) FROM orders`)
		bumps, err := logrepl.BumpSequences(ctx, a.db, b.db, tables, gap)
		if err != nil || len(bumps) != 2 {
			t.Fatalf("BumpSequences = %v, %v", bumps, err)
		}
		again, err := logrepl.BumpSequences(ctx, a.db, b.db, tables, gap)
		if err != nil || fmt.Sprint(again[1].Before, again[1].After) != fmt.Sprint(bumps[1].After, bumps[1].After) {
			t.Fatalf("second bump moved: %v then %v, %v", bumps, again, err)
		}
		if id := count(t, b.db, `SELECT nextval('orders_id_seq')`); id <= srcMax+gap {
			t.Errorf("target id %d not above source max %d + gap", id, srcMax)
		}
		// A source that moved on is only followed, never overtaken backwards.
		mustExec(t, b.db, `SELECT setval('order_lines_id_seq', 10000000)`)
		if _, err := logrepl.EnsureSequencesAbove(ctx, a.db, b.db, tables); err != nil {
			t.Fatal(err)
		}
		if got := count(t, b.db, `SELECT last_value FROM order_lines_id_seq`); got != 10000000 {
			t.Errorf("EnsureSequencesAbove moved a sequence backwards to %d", got)
		}
	})

	step("reverse link", func(t *testing.T) {
		// Before the pause: the reverse slot exists while forward traffic
		// still flows, so it sees forward-applied changes it must skip.
		for range 2 {
			if _, err := logrepl.PrepareReverse(ctx, b.db, n.Reverse, tenant, tables); err != nil {
				t.Fatal(err)
			}
		}
		mustExec(t, a.db, `INSERT INTO orders (tenant_id, note) SELECT 'xx', 'late' FROM generate_series(1, 50)`)
		mustExec(t, a.db, `UPDATE orders SET note = 'late-upd' WHERE tenant_id = 'xx' AND note = 'o1'`)
		// Pause: the tenant no longer writes on a; wait, flip.
		if err := logrepl.WaitApplied(ctx, a.db, b.db, n.Forward.Subscription, n.Forward.Slot, mustLSN(t, a.db), 10*time.Second); err != nil {
			t.Fatal(err)
		}
		flip := mustLSN(t, b.db)
		if err := logrepl.SetSubscriptionEnabled(ctx, b.db, n.Forward.Subscription, false); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := logrepl.StartReverse(ctx, a.db, n.Reverse, b.ep, flip); err != nil {
				t.Fatal(err)
			}
		}
		// After the flip the tenant writes on b.
		mustExec(t, b.db, `INSERT INTO orders (tenant_id, note) SELECT 'xx', 'on-b' FROM generate_series(1, 20)`)
		mustExec(t, b.db, `UPDATE orders SET note = 'upd-on-b' WHERE tenant_id = 'xx' AND note = 'late'`)
		mustExec(t, b.db, `DELETE FROM order_lines WHERE tenant_id = 'xx' AND id % 5 = 0`)
		if err := logrepl.WaitApplied(ctx, b.db, a.db, n.Reverse.Subscription, n.Reverse.Slot, mustLSN(t, b.db), 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := count(t, a.db, `SELECT count(*) FROM orders WHERE tenant_id = 'xx' AND note = 'on-b'`); got != 20 {
			t.Errorf("rows written on b arrived %d times of 20", got)
		}
		if got := count(t, a.db, `SELECT count(*) FROM orders WHERE note = 'late'`); got != 0 {
			t.Errorf("%d updates made on b not applied on a", got)
		}
		// WaitApplied's keepalive proofs can run ahead of a transaction
		// still being applied (the flip itself proves catch-up with a marker
		// row, WaitMarker); the counts must converge.
		var diff []logrepl.CountMismatch
		for deadline := time.Now().Add(10 * time.Second); ; {
			_, _, diff, err = logrepl.CountBoth(ctx, a.db, b.db, tenant, tables)
			if err != nil || diff == nil || time.Now().After(deadline) {
				break
			}
			<-time.After(10 * time.Millisecond) // poll interval
		}
		if err != nil || diff != nil {
			t.Errorf("counts differ after reverse: %v %v", diff, err)
		}
		st, err := logrepl.Status(ctx, a.db, n.Reverse.Subscription)
		if err != nil || st.ApplyErrors != 0 || st.WorkerPID == 0 {
			t.Errorf("reverse subscription unhealthy: %+v, %v", st, err)
		}
	})

	step("cleanup is idempotent", func(t *testing.T) {
		for range 2 {
			if err := logrepl.DropLink(ctx, b.db, a.db, n.Reverse); err != nil {
				t.Fatal(err)
			}
			if err := logrepl.DropLink(ctx, a.db, b.db, n.Forward); err != nil {
				t.Fatal(err)
			}
		}
		for _, db := range []*pgxpool.Pool{a.db, b.db} {
			if got := count(t, db, `SELECT count(*) FROM pg_publication`) + count(t, db, `SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`); got != 0 {
				t.Errorf("%d publications and subscriptions left", got)
			}
		}
		if got := count(t, a.db, `SELECT count(*) FROM pg_replication_slots`) + count(t, b.db, `SELECT count(*) FROM pg_replication_slots`); got != 0 {
			t.Errorf("%d slots left", got)
		}
		if _, err := logrepl.Lag(ctx, a.db, n.Forward.Slot); !errors.Is(err, logrepl.ErrSlotLost) {
			t.Errorf("Lag of dropped slot: %v, want ErrSlotLost", err)
		}
	})

	step("purge only the tenant", func(t *testing.T) {
		other := mustCount(t, a.db, "yx")
		var calls int
		got, err := logrepl.PurgeTenant(ctx, a.db, tenant, []string{"orders", "order_lines"}, 100, func(string, int64) { calls++ })
		if err != nil {
			t.Fatal(err)
		}
		if left := mustCount(t, a.db, tenant); left["orders"]+left["order_lines"] != 0 {
			t.Errorf("left after purge: %v", left)
		}
		if after := mustCount(t, a.db, "yx"); fmt.Sprint(after) != fmt.Sprint(other) {
			t.Errorf("other tenant changed: %v -> %v", other, after)
		}
		if got["orders"] < 200 || calls < 3 {
			t.Errorf("purged %v in %d batches", got, calls)
		}
	})

	t.Run("broken links", func(t *testing.T) { testBroken(t, ca, cb) })
}

// testBroken checks the sentinels: an apply error and a lost slot.
func testBroken(t *testing.T, ca, cb *localpg.Cluster) {
	ctx := context.Background()
	a, b := mustSide(t, ca, true), mustSide(t, cb, false)
	n, _ := logrepl.NamesFor("m2")
	if err := logrepl.CreatePublication(ctx, a.db, n.Forward.Publication, "xx", tables); err != nil {
		t.Fatal(err)
	}
	if _, err := logrepl.CreateSlot(ctx, a.db, n.Forward.Slot); err != nil {
		t.Fatal(err)
	}
	if err := logrepl.CreateSubscription(ctx, b.db, n.Forward.Subscription, a.ep, n.Forward.Publication, logrepl.SubOpts{Enabled: true}); err != nil {
		t.Fatal(err)
	}
	// The subscription connects with the source cluster's TLS settings and
	// its credential (dbconn.Config.String), never libpq's defaults.
	var conninfo string
	if err := b.db.QueryRow(ctx, "SELECT subconninfo FROM pg_subscription WHERE subname = $1", n.Forward.Subscription).Scan(&conninfo); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(conninfo, "sslmode='disable'") || !strings.Contains(conninfo, "user='postgres'") || !strings.Contains(conninfo, "password=") {
		t.Fatalf("subscription conninfo %q lacks the endpoint's TLS settings or credential", conninfo)
	}
	// A row already on the target makes the next insert fail there.
	mustExec(t, b.db, `INSERT INTO orders (tenant_id, id, note) VALUES ('xx', 999999, 'conflict')`)
	mustExec(t, a.db, `INSERT INTO orders (tenant_id, id, note) VALUES ('xx', 999999, 'conflict')`)
	err := logrepl.WaitApplied(ctx, a.db, b.db, n.Forward.Subscription, n.Forward.Slot, mustLSN(t, a.db), 10*time.Second)
	if !errors.Is(err, logrepl.ErrSubscriptionBroken) {
		t.Fatalf("WaitApplied with apply error: %v, want ErrSubscriptionBroken", err)
	}
	mustExec(t, b.db, `DELETE FROM orders WHERE id = 999999`)
	// The slot disappears under the (disabled) subscription.
	if err := logrepl.SetSubscriptionEnabled(ctx, b.db, n.Forward.Subscription, false); err != nil {
		t.Fatal(err)
	}
	if err := logrepl.DropSlot(ctx, a.db, n.Forward.Slot); err != nil {
		t.Fatal(err)
	}
	if err := logrepl.SetSubscriptionEnabled(ctx, b.db, n.Forward.Subscription, true); err != nil {
		t.Fatal(err)
	}
	if _, err := logrepl.Lag(ctx, a.db, n.Forward.Slot); !errors.Is(err, logrepl.ErrSlotLost) {
		t.Errorf("Lag: %v, want ErrSlotLost", err)
	}
	err = logrepl.WaitApplied(ctx, a.db, b.db, n.Forward.Subscription, n.Forward.Slot, mustLSN(t, a.db), 10*time.Second)
	if !errors.Is(err, logrepl.ErrSlotLost) {
		t.Errorf("WaitApplied: %v, want ErrSlotLost", err)
	}
	// Cleanup still works with the slot gone.
	if err := logrepl.DropSubscription(ctx, b.db, n.Forward.Subscription); err != nil {
		t.Fatal(err)
	}
	if err := logrepl.DropSubscription(ctx, b.db, n.Forward.Subscription); err != nil {
		t.Fatal(err)
	}
}

func TestValidation(t *testing.T) {
	ctx := context.Background()
	for _, id := range []string{"", "A", "a-b", "x;drop", string(make([]byte, 41))} {
		if _, err := logrepl.NamesFor(id); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("NamesFor(%q) = %v, want ErrInvalid", id, err)
		}
	}
	// Bad input is rejected before any SQL runs: a nil Querier is never used.
	cases := map[string]error{
		"publication": logrepl.CreatePublication(ctx, nil, `p"; drop`, "xx", tables),
		"tenant":      logrepl.CreatePublication(ctx, nil, "p", "x'; drop table orders; --", tables),
		"table":       logrepl.CreatePublication(ctx, nil, "p", "xx", []string{`orders"`}),
		"no tables":   logrepl.CreatePublication(ctx, nil, "p", "xx", nil),
		"slot":        logrepl.CreateSubscription(ctx, nil, "s", logrepl.Endpoint{}, "p", logrepl.SubOpts{SlotName: "Bad"}),
		"batch":       func() error { _, err := logrepl.PurgeTenant(ctx, nil, "xx", tables, 0, nil); return err }(),
		"gap":         func() error { _, err := logrepl.BumpSequences(ctx, nil, nil, tables, -1); return err }(),
	}
	for name, err := range cases {
		if !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestParseLSN(t *testing.T) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"} {
		l, err := logrepl.ParseLSN(s)
		if err != nil || l.String() != s {
			t.Errorf("ParseLSN(%s) = %s, %v", s, l, err)
		}
	}
	if _, err := logrepl.ParseLSN("16B374D848"); err == nil {
		t.Error("ParseLSN accepted a value without /")
	}
}

// TestSubscription_VerifiedTLS: a subscription whose publisher's endpoint
// says sslmode verify-full with a CA file connects from the subscriber's
// server over verified TLS (the walsender's session is encrypted) and
// copies the tenant's rows.
func TestSubscription_VerifiedTLS(t *testing.T) {
	ctx := context.Background()
	ca, caFile := pgtest.MustTLSCluster(t, "pub")
	cb := pgtest.MustNewCluster(t, "sub")
	a, b := mustSide(t, ca, true), mustSide(t, cb, false)
	a.ep.TLS = dbconn.TLS{Mode: dbconn.SSLVerifyFull, RootCert: caFile}
	n, err := logrepl.NamesFor("tls1")
	if err != nil {
		t.Fatal(err)
	}
	if err := logrepl.CreatePublication(ctx, a.db, n.Forward.Publication, "xx", tables); err != nil {
		t.Fatal(err)
	}
	if _, err := logrepl.CreateSlot(ctx, a.db, n.Forward.Slot); err != nil {
		t.Fatal(err)
	}
	if err := logrepl.CreateSubscription(ctx, b.db, n.Forward.Subscription, a.ep, n.Forward.Publication, logrepl.SubOpts{CopyData: true, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logrepl.DropLink(context.Background(), a.db, b.db, n.Forward) })
	if err := logrepl.WaitSynced(ctx, b.db, n.Forward.Subscription, "xx", nil); err != nil {
		t.Fatal(err)
	}
	if got := mustCount(t, b.db, "xx"); got["orders"] != 200 {
		t.Fatalf("copied %v over TLS, want 200 orders", got)
	}
	if n := count(t, a.db, `SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s ON s.pid = r.pid
		WHERE r.application_name = $1 AND s.ssl`, n.Forward.Subscription); n != 1 {
		t.Fatalf("%d encrypted walsenders for the subscription, want 1", n)
	}
}
