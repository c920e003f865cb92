package tenanttable_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"tenantry/pgtest"
	"tenantry/tenanttable"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestList(t *testing.T) {
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	pool := pgtest.MustPool(t, c, pgtest.MustDB(t))
	_, err := pool.Exec(ctx, `
CREATE TABLE zparent (tenant_id text NOT NULL, id bigint NOT NULL, name text, PRIMARY KEY (tenant_id, id));
CREATE TABLE achild (tenant_id text NOT NULL, id bigint NOT NULL, parent bigint NOT NULL,
  total numeric GENERATED ALWAYS AS (id * 2) STORED,
  PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, parent) REFERENCES zparent (tenant_id, id));
CREATE TABLE "grand child" (tenant_id text NOT NULL, child bigint NOT NULL, n int NOT NULL,
  PRIMARY KEY (tenant_id, child, n), FOREIGN KEY (tenant_id, child) REFERENCES achild (tenant_id, id));
CREATE TABLE not_tenant (id bigint PRIMARY KEY);`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := tenanttable.List(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tb := range tables {
		names = append(names, tb.Name)
	}
	if want := []string{"zparent", "achild", "grand child"}; !equal(names, want) {
		t.Fatalf("order = %v, want %v", names, want)
	}
	child, _ := tenanttable.Find(tables, "achild")
	if !equal(child.Columns, []string{"tenant_id", "id", "parent"}) || !equal(child.PK, []string{"tenant_id", "id"}) {
		t.Fatalf("achild = %+v", child)
	}
	gc, _ := tenanttable.Find(tables, "grand child")
	if !equal(gc.PK, []string{"tenant_id", "child", "n"}) || gc.Ident() != `"public"."grand child"` {
		t.Fatalf("grand child = %+v ident %s", gc, gc.Ident())
	}

	t.Run("primary key without tenant_id", func(t *testing.T) {
		if _, err := pool.Exec(ctx, `CREATE TABLE bad (tenant_id text NOT NULL, id bigint PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		if _, err := tenanttable.List(ctx, pool); !errors.Is(err, tenanttable.ErrRules) {
			t.Fatalf("err = %v, want ErrRules", err)
		}
	})
}

// TestList_Cycle: foreign keys that form a cycle among tenant tables are
// refused with the cycle named (the one policy every caller relies on);
// a table referencing itself is not a cycle.
func TestList_Cycle(t *testing.T) {
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	pool := pgtest.MustPool(t, c, pgtest.MustDB(t))
	_, err := pool.Exec(ctx, `
CREATE TABLE customers (tenant_id text NOT NULL, id bigint NOT NULL, referred_by bigint,
  PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, referred_by) REFERENCES customers (tenant_id, id));
CREATE TABLE addresses (tenant_id text NOT NULL, id bigint NOT NULL, customer bigint NOT NULL,
  PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, customer) REFERENCES customers (tenant_id, id));`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := tenanttable.Names(ctx, pool)
	if err != nil || !equal(names, []string{"customers", "addresses"}) {
		t.Fatalf("Names with a self-reference = %v, %v; want [customers addresses]", names, err)
	}

	// customers -> addresses -> customers: no order puts parents first.
	_, err = pool.Exec(ctx, `
ALTER TABLE customers ADD COLUMN billing bigint,
  ADD FOREIGN KEY (tenant_id, billing) REFERENCES addresses (tenant_id, id);
CREATE TABLE notes (tenant_id text NOT NULL, id bigint NOT NULL, address bigint NOT NULL,
  PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, address) REFERENCES addresses (tenant_id, id));`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tenanttable.List(ctx, pool)
	if !errors.Is(err, tenanttable.ErrRules) {
		t.Fatalf("List with a cycle = %v, want ErrRules", err)
	}
	if want := "cycle: addresses -> customers -> addresses"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the cycle (%s)", err, want)
	}
	if _, err := tenanttable.Names(ctx, pool); !errors.Is(err, tenanttable.ErrRules) {
		t.Errorf("Names with a cycle = %v, want ErrRules", err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
