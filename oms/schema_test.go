package oms_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"tenantry/oms"
	"tenantry/pgtest"
	"tenantry/tenanttable"
)

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustPool(t, pgtest.MustCluster(t), pgtest.MustDB(t))

	if v, err := oms.SchemaVersion(ctx, pool); err != nil || v != 0 {
		t.Fatalf("SchemaVersion of an empty database = %d, %v; want 0", v, err)
	}
	// Concurrent first runs serialise; a later run finds nothing to do.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = oms.Migrate(ctx, pool)
		}()
	}
	wg.Wait()
	for _, err := range append(errs, oms.Migrate(ctx, pool)) {
		if err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	if v, err := oms.SchemaVersion(ctx, pool); err != nil || v != oms.LatestVersion() {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, oms.LatestVersion())
	}
	var recorded int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM oms_schema_version").Scan(&recorded); err != nil {
		t.Fatal(err)
	}
	if recorded != oms.LatestVersion() {
		t.Fatalf("oms_schema_version has %d rows, want %d", recorded, oms.LatestVersion())
	}

	tables, err := tenanttable.Names(ctx, pool)
	if err != nil {
		t.Fatalf("the OMS schema breaks the tenant data rules: %v", err)
	}
	t.Run("every table is a tenant table", func(t *testing.T) {
		rows, err := pool.Query(ctx, `SELECT relname::text FROM pg_class
WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND relname <> 'oms_schema_version' ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			got = append(got, n)
		}
		want := slices.Sorted(slices.Values(tables))
		if !slices.Equal(got, want) {
			t.Fatalf("tables %v, tenant tables %v", got, want)
		}
	})
	t.Run("tenant_id first in every primary key", func(t *testing.T) {
		for _, tbl := range tables {
			var first, typ string
			var notNull bool
			err := pool.QueryRow(ctx, `SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
WHERE c.conrelid = $1::regclass AND c.contype = 'p'`, tbl).Scan(&first, &typ, &notNull)
			if err != nil {
				t.Fatalf("%s: %v", tbl, err)
			}
			if first != "tenant_id" || typ != "text" || !notNull {
				t.Errorf("%s: primary key starts with %s %s (not null %v), want tenant_id text not null", tbl, first, typ, notNull)
			}
		}
	})
	t.Run("every foreign key includes tenant_id and points backwards", func(t *testing.T) {
		rows, err := pool.Query(ctx, `SELECT conrelid::regclass::text, confrelid::regclass::text, conname::text,
	EXISTS (SELECT 1 FROM unnest(conkey) k JOIN pg_attribute a ON a.attrelid = conrelid AND a.attnum = k WHERE a.attname = 'tenant_id'),
	EXISTS (SELECT 1 FROM unnest(confkey) k JOIN pg_attribute a ON a.attrelid = confrelid AND a.attnum = k WHERE a.attname = 'tenant_id')
FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace`)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var from, to, name string
			var hasFrom, hasTo bool
			if err := rows.Scan(&from, &to, &name, &hasFrom, &hasTo); err != nil {
				t.Fatal(err)
			}
			n++
			if !hasFrom || !hasTo {
				t.Errorf("%s.%s -> %s does not include tenant_id on both sides", from, name, to)
			}
			if slices.Index(tables, to) >= slices.Index(tables, from) {
				t.Errorf("tenanttable lists %s before %s, which it references", from, to)
			}
		}
		if n == 0 {
			t.Fatal("no foreign keys found")
		}
	})
	t.Run("timestamps are timestamptz", func(t *testing.T) {
		var bad []string
		rows, err := pool.Query(ctx, `SELECT table_name || '.' || column_name FROM information_schema.columns
WHERE table_schema = 'public' AND data_type = 'timestamp without time zone'`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			bad = append(bad, c)
		}
		if len(bad) > 0 {
			t.Fatalf("columns without time zone: %v", bad)
		}
	})
	t.Run("ids come from owned sequences", func(t *testing.T) {
		for _, tbl := range []string{"products", "locations", "customers", "inventory_adjustments", "orders", "fulfilments"} {
			var seq *string
			if err := pool.QueryRow(ctx, "SELECT pg_get_serial_sequence($1, 'id')", tbl).Scan(&seq); err != nil {
				t.Fatal(err)
			}
			if seq == nil {
				t.Errorf("%s.id has no owned sequence", tbl)
			}
		}
	})
}
