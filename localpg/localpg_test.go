package localpg_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"tenantry/localpg"
	"tenantry/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestCluster_StandbyPromoteKill(t *testing.T) {
	ctx := context.Background()
	p := pgtest.MustNewCluster(t, "prim")
	conn, err := p.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "create table t(id int primary key); insert into t values (1),(2)"); err != nil {
		t.Fatal(err)
	}
	var wl string
	if err := conn.QueryRow(ctx, "show wal_level").Scan(&wl); err != nil || wl != "logical" {
		t.Fatalf("wal_level = %q, %v; want logical", wl, err)
	}
	s := pgtest.MustStandby(t, p)
	sc, err := s.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(ctx)
	var rec bool
	if err := sc.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&rec); err != nil || !rec {
		t.Fatalf("standby in recovery = %v, %v", rec, err)
	}
	// Replication: a row written on the primary appears on the standby.
	if _, err := conn.Exec(ctx, "insert into t values (3)"); err != nil {
		t.Fatal(err)
	}
	var lsn string
	if err := conn.QueryRow(ctx, "select pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var caught bool
		if err := sc.QueryRow(ctx, "select pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&caught); err != nil {
			t.Fatal(err)
		}
		if caught {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("standby did not replay the primary's LSN")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var n int
	if err := sc.QueryRow(ctx, "select count(*) from t").Scan(&n); err != nil || n != 3 {
		t.Fatalf("standby rows = %d, %v; want 3", n, err)
	}

	// Kill the primary, promote the standby: it accepts writes.
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if p.Running() {
		t.Fatal("primary still running after Kill")
	}
	sc.Close(ctx)
	if err := s.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	sc2, err := s.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer sc2.Close(ctx)
	if _, err := sc2.Exec(ctx, "insert into t values (4)"); err != nil {
		t.Fatalf("write after promote: %v", err)
	}
	// The killed primary restarts with crash recovery and has its rows.
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c2, err := p.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	if err := c2.QueryRow(ctx, "select count(*) from t").Scan(&n); err != nil || n != 3 {
		t.Fatalf("rows after crash recovery = %d, %v; want 3", n, err)
	}
}

func TestCluster_Errors(t *testing.T) {
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	if err := c.Start(ctx); !errors.Is(err, localpg.ErrDirInUse) {
		t.Fatalf("second start: %v, want ErrDirInUse", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	dir := filepath.Join(t.TempDir(), "busy")
	bc, err := localpg.Create(ctx, localpg.Config{Dir: dir, Port: busy})
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Destroy(ctx)
	if err := bc.Start(ctx); !errors.Is(err, localpg.ErrPortInUse) {
		t.Fatalf("start on busy port: %v, want ErrPortInUse", err)
	}
	t.Setenv("TENANTRY_PG_BIN", t.TempDir())
	if _, err := localpg.FindBinDir(); !errors.Is(err, localpg.ErrBinariesMissing) {
		t.Fatalf("FindBinDir with empty dir: %v, want ErrBinariesMissing", err)
	}
}
