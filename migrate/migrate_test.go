package migrate_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/migrate"
	"tenantry/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// steps are deliberately not idempotent (plain CREATE TABLE, INSERT): a step
// applied twice fails or leaves two rows.
var steps = []string{
	`CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1)`,
	// The sleep widens the window in which an unserialised second migrator
	// would read version 1 and apply step 2 again.
	`SELECT pg_sleep(0.2); CREATE TABLE b (id int PRIMARY KEY); INSERT INTO a VALUES (2)`,
	`ALTER TABLE b ADD COLUMN note text; INSERT INTO a VALUES (3)`,
}

func schema() *migrate.Schema {
	return &migrate.Schema{Name: "test", Table: "test_migrations", LockKey: 42, Steps: steps}
}

func TestSchema_Apply(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustPool(t, pgtest.MustCluster(t), pgtest.MustDB(t))
	s := schema()

	if v, err := s.Version(ctx, pool); err != nil || v != 0 {
		t.Fatalf("Version of an empty database = %d, %v; want 0", v, err)
	}
	if n, err := s.Apply(ctx, pool); err != nil || n != 3 {
		t.Fatalf("Apply = %d, %v; want 3, nil", n, err)
	}
	if v, err := s.Version(ctx, pool); err != nil || v != 3 {
		t.Fatalf("Version = %d, %v; want 3", v, err)
	}
	if n, err := s.Apply(ctx, pool); err != nil || n != 0 {
		t.Fatalf("second Apply = %d, %v; want 0, nil", n, err)
	}
	// A new step appended later is applied alone.
	s.Steps = append(s.Steps[:3:3], `INSERT INTO a VALUES (4)`)
	if n, err := s.Apply(ctx, pool); err != nil || n != 1 {
		t.Fatalf("Apply of an appended step = %d, %v; want 1, nil", n, err)
	}
	var rows int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM a").Scan(&rows); err != nil || rows != 4 {
		t.Fatalf("a has %d rows (%v), want 4", rows, err)
	}
}

// Two migrators, as two control-plane replicas starting at once, each with
// its own pool: every step is applied exactly once and both succeed.
func TestSchema_Apply_concurrentMigrators(t *testing.T) {
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	db := pgtest.MustDB(t)
	pools := []*pgxpool.Pool{pgtest.MustPool(t, c, db), pgtest.MustPool(t, c, db)}
	s := schema()

	var wg sync.WaitGroup
	applied := make([]int, len(pools))
	errs := make([]error, len(pools))
	for i := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = s.Apply(ctx, pools[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrator %d: %v", i, err)
		}
	}
	if applied[0]+applied[1] != len(steps) {
		t.Fatalf("migrators applied %v steps, want %d in all", applied, len(steps))
	}
	pool := pgtest.MustPool(t, c, db)
	var recorded, rows int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM test_migrations").Scan(&recorded); err != nil || recorded != len(steps) {
		t.Fatalf("test_migrations has %d rows (%v), want %d", recorded, err, len(steps))
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM a").Scan(&rows); err != nil || rows != len(steps) {
		t.Fatalf("a has %d rows (%v), want %d: a step ran twice or not at all", rows, err, len(steps))
	}
}

// Each step is its own transaction: a failing step rolls back alone, and a
// corrected binary continues from the last good step.
func TestSchema_Apply_failingStep(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustPool(t, pgtest.MustCluster(t), pgtest.MustDB(t))
	s := schema()
	s.Steps = []string{steps[0], `CREATE TABLE b (id int PRIMARY KEY); INSERT INTO missing VALUES (1)`}

	n, err := s.Apply(ctx, pool)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42P01" || n != 1 {
		t.Fatalf("Apply = %d, %v; want 1 and undefined_table", n, err)
	}
	if v, err := s.Version(ctx, pool); err != nil || v != 1 {
		t.Fatalf("Version after a failed step = %d, %v; want 1", v, err)
	}
	var b *string
	if err := pool.QueryRow(ctx, "SELECT to_regclass('b')::text").Scan(&b); err != nil || b != nil {
		t.Fatalf("table b of the failed step exists (%v, %v)", b, err)
	}
	s.Steps = steps
	if n, err := s.Apply(ctx, pool); err != nil || n != 2 {
		t.Fatalf("Apply after the fix = %d, %v; want 2, nil", n, err)
	}
}

func TestSchema_Apply_tooNew(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustPool(t, pgtest.MustCluster(t), pgtest.MustDB(t))
	if _, err := schema().Apply(ctx, pool); err != nil {
		t.Fatal(err)
	}
	old := schema()
	old.Steps = steps[:2]
	if n, err := old.Apply(ctx, pool); !errors.Is(err, migrate.ErrTooNew) || n != 0 {
		t.Fatalf("Apply by an older binary = %d, %v; want 0, ErrTooNew", n, err)
	}
}

// Two schemas in one database keep separate versions.
func TestSchema_Apply_twoSchemas(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustPool(t, pgtest.MustCluster(t), pgtest.MustDB(t))
	other := &migrate.Schema{Name: "other", Table: "other_migrations", LockKey: 43,
		Steps: []string{`CREATE TABLE other (id int)`}}
	if _, err := schema().Apply(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if n, err := other.Apply(ctx, pool); err != nil || n != 1 {
		t.Fatalf("Apply of a second schema = %d, %v; want 1, nil", n, err)
	}
	if v, err := other.Version(ctx, pool); err != nil || v != 1 {
		t.Fatalf("second schema's Version = %d, %v; want 1", v, err)
	}
	if v, err := schema().Version(ctx, pool); err != nil || v != 3 {
		t.Fatalf("first schema's Version = %d, %v; want 3", v, err)
	}
}
