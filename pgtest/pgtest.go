// Package pgtest gives tests real PostgreSQL clusters, started by localpg:
// MustCluster returns the one cluster shared by a test binary, MustDB a fresh
// database on it for one test, MustNewCluster a private cluster for tests that
// restart, kill or replicate between clusters.
//
// Clusters authenticate as every local cluster does (scram-sha-256 over TCP):
// the superuser's password, one per test binary, is the clusters' Password
// (Cluster.Credential, Cluster.Config, Cluster.DSN carry it).
//
// A test binary that uses pgtest calls Main from TestMain so that its clusters
// are torn down when the tests end:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/localpg"
)

// TestSettings make clusters faster to use in tests without weakening what a
// test can observe: fsync is off (a killed postmaster still loses nothing the
// kernel has), synchronous_commit stays on.
var TestSettings = map[string]string{
	"fsync":                        "off",
	"full_page_writes":             "off",
	"log_min_messages":             "warning",
	"wal_receiver_status_interval": "'1s'",
}

var (
	mu        sync.Mutex
	baseDir   string
	shared    *localpg.Cluster
	owned     []*localpg.Cluster
	sharedErr error
	dbSeq     atomic.Int64
	// password of every cluster's superuser in this test binary.
	password = localpg.GeneratePassword()
)

// Main runs the tests and then destroys every cluster pgtest started.
func Main(m *testing.M) {
	code := m.Run()
	Teardown()
	os.Exit(code)
}

// Teardown destroys every cluster started by this package. Main calls it.
func Teardown() {
	mu.Lock()
	defer mu.Unlock()
	ctx := context.Background()
	for _, c := range owned {
		_ = c.Destroy(ctx)
	}
	owned = nil
	shared = nil
	if baseDir != "" {
		_ = os.RemoveAll(baseDir)
		baseDir = ""
	}
}

func base(tb testing.TB) string {
	if baseDir == "" {
		d, err := os.MkdirTemp("", "tenantry-pgtest-")
		if err != nil {
			tb.Fatalf("pgtest: %v", err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			tb.Fatalf("pgtest: %v", err)
		}
		baseDir = d
	}
	return baseDir
}

func newCluster(tb testing.TB, name string, extra map[string]string) (*localpg.Cluster, error) {
	dir := filepath.Join(base(tb), fmt.Sprintf("%s-%d", name, time.Now().UnixNano()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	settings := map[string]string{}
	for k, v := range TestSettings {
		settings[k] = v
	}
	for k, v := range extra {
		settings[k] = v
	}
	c, err := localpg.Create(ctx, localpg.Config{Dir: dir, Name: name, Settings: settings, Password: password})
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	owned = append(owned, c)
	return c, nil
}

// MustCluster returns the cluster shared by all tests of this binary,
// starting it on first use. Tests must not stop or kill it.
func MustCluster(tb testing.TB) *localpg.Cluster {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = newCluster(tb, "shared", nil)
	}
	if sharedErr != nil {
		tb.Fatalf("pgtest: start shared cluster: %v", sharedErr)
	}
	return shared
}

// MustNewCluster starts a private cluster for this test; it is destroyed when
// the test ends.
func MustNewCluster(tb testing.TB, name string) *localpg.Cluster {
	tb.Helper()
	return MustNewClusterWith(tb, name, nil)
}

// MustNewClusterWith is MustNewCluster with settings added to TestSettings
// (and overriding them), e.g. a wal_level a test needs.
func MustNewClusterWith(tb testing.TB, name string, settings map[string]string) *localpg.Cluster {
	tb.Helper()
	mu.Lock()
	c, err := newCluster(tb, name, settings)
	mu.Unlock()
	if err != nil {
		tb.Fatalf("pgtest: start cluster %s: %v", name, err)
	}
	tb.Cleanup(func() { _ = c.Destroy(context.Background()) })
	return c
}

// MustStandby adds a streaming standby to c; it is destroyed when the test ends.
func MustStandby(tb testing.TB, c *localpg.Cluster) *localpg.Cluster {
	tb.Helper()
	mu.Lock()
	dir := filepath.Join(base(tb), fmt.Sprintf("%s-standby-%d", c.Name, time.Now().UnixNano()))
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := c.AddStandby(ctx, dir, c.Name+"-standby")
	if err != nil {
		tb.Fatalf("pgtest: standby of %s: %v", c.Name, err)
	}
	mu.Lock()
	owned = append(owned, s)
	mu.Unlock()
	tb.Cleanup(func() { _ = s.Destroy(context.Background()) })
	return s
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// DBName derives a database name for tb that is valid and unique in this binary.
func DBName(tb testing.TB) string {
	n := nonIdent.ReplaceAllString(strings.ToLower(tb.Name()), "_")
	if len(n) > 40 {
		n = n[:40]
	}
	return fmt.Sprintf("t%d_%s", dbSeq.Add(1), n)
}

// MustDB creates a fresh database on the shared cluster for this test and
// returns its name; it is dropped when the test ends.
func MustDB(tb testing.TB) string {
	tb.Helper()
	return MustDBOn(tb, MustCluster(tb))
}

// MustDBOn creates a fresh database on c for this test and returns its name;
// it is dropped when the test ends.
func MustDBOn(tb testing.TB, c *localpg.Cluster) string {
	tb.Helper()
	name := DBName(tb)
	ctx := context.Background()
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		tb.Fatalf("pgtest: connect %s: %v", c.Name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if !c.Running() {
			return
		}
		conn, err := c.Connect(ctx, "postgres")
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	return name
}

// MustPool opens a superuser pool to database db on c, closed when the test ends.
func MustPool(tb testing.TB, c *localpg.Cluster, db string) *pgxpool.Pool {
	tb.Helper()
	p, err := c.Config(db).Pool(context.Background(), 0)
	if err != nil {
		tb.Fatalf("pgtest: pool %s/%s: %v", c.Name, db, err)
	}
	tb.Cleanup(p.Close)
	return p
}
