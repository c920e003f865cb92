package localpg_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
	// The standby streams as the replication role: the superuser's password
	// is in none of its files.
	for _, f := range []string{"postgresql.auto.conf", "postgresql.conf"} {
		b, err := os.ReadFile(filepath.Join(s.DataDir(), f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), p.Password) {
			t.Fatalf("standby's %s holds the superuser's password", f)
		}
		if f == "postgresql.auto.conf" && !strings.Contains(string(b), localpg.Replicator) {
			t.Fatalf("standby's %s does not stream as %s:\n%s", f, localpg.Replicator, b)
		}
	}
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

// TestCluster_Authenticates: every TCP connection needs the superuser's
// password, replication connections included, whoever connects.
func TestCluster_Authenticates(t *testing.T) {
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatalf("connect with the password: %v", err)
	}
	conn.Close(ctx)
	for _, pw := range []string{"", "wrong"} {
		cfg := c.Config("postgres")
		cfg.Password = pw
		if conn, err := cfg.Connect(ctx); err == nil {
			conn.Close(ctx)
			t.Fatalf("connected as %s with password %q", localpg.Superuser, pw)
		} else if !strings.Contains(err.Error(), "password authentication failed") &&
			!strings.Contains(err.Error(), "no password") {
			t.Fatalf("password %q: %v, want an authentication failure", pw, err)
		}
	}
	// A replication connection without the password.
	rc := c.Config("postgres")
	rc.Password = ""
	cc, err := rc.ConnConfig()
	if err != nil {
		t.Fatal(err)
	}
	cc.RuntimeParams["replication"] = "database"
	if conn, err := pgx.ConnectConfig(ctx, cc); err == nil {
		conn.Close(ctx)
		t.Fatal("replication connection without a password succeeded")
	}
	// psql, as another OS user of this machine, with no password.
	if os.Geteuid() == 0 {
		psql := filepath.Join(c.BinDir, "psql")
		cmd := exec.CommandContext(ctx, "runuser", "-u", "nobody", "--", psql, "-w", "-h", c.Host,
			"-p", strconv.Itoa(c.Port), "-U", localpg.Superuser, "-d", "postgres", "-c", "select 1")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("psql as nobody without a password succeeded: %s", out)
		}
		if !strings.Contains(string(out), "password") {
			t.Fatalf("psql as nobody: %v: %s; want a password failure", err, out)
		}
	}
	// The password is in no file localpg writes.
	b, err := os.ReadFile(filepath.Join(c.Dir, "cluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), c.Password) {
		t.Fatal("cluster.json holds the superuser password")
	}
}
