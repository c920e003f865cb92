package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"tenantry/localpg"
	"tenantry/route"
)

func init() { benchCommands = append(benchCommands, newBenchRouteCmd) }

// benchRoute measures Router.Tx against a bare pgxpool on a temporary local
// cluster.
type benchRoute struct {
	a        *app
	duration time.Duration
	workers  int
	rounds   int
}

func newBenchRouteCmd(a *app) *cobra.Command {
	b := &benchRoute{a: a}
	cmd := &cobra.Command{
		Use:   "route",
		Short: "Tenant router throughput against a bare connection pool (one-row read transactions)",
		Long: "Starts a temporary local PostgreSQL cluster, then runs the same one-row read transaction\n" +
			"through route.Router and through a bare pgxpool in interleaved rounds, and reports both\n" +
			"rates and their ratio. The cluster is destroyed afterwards.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return b.Run(cmd.Context(), args) },
	}
	f := cmd.Flags()
	f.DurationVar(&b.duration, "duration", 5*time.Second, "measuring time of each side")
	f.IntVar(&b.workers, "workers", 8, "concurrent transactions")
	f.IntVar(&b.rounds, "rounds", 10, "interleaved rounds (router and direct alternate first)")
	return cmd
}

// Run sets up the cluster, measures and prints the result.
func (b *benchRoute) Run(ctx context.Context, _ []string) error {
	if b.duration <= 0 || b.workers <= 0 || b.rounds <= 0 {
		return usageErr("--duration, --workers and --rounds must be positive")
	}
	dir, err := os.MkdirTemp("", "tenantry-bench-route-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The cluster runs as an unprivileged user when we are root: let it in.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	b.a.log.Info("starting temporary cluster", "dir", dir)
	c, err := localpg.Create(ctx, localpg.Config{Dir: filepath.Join(dir, "bench"), Name: "bench"})
	if err != nil {
		return err
	}
	defer func() { _ = c.Destroy(context.WithoutCancel(ctx)) }()
	if err := c.Start(ctx); err != nil {
		return err
	}
	cfg, err := b.setup(ctx, c)
	if err != nil {
		return err
	}
	b.a.log.Info("measuring", "workers", b.workers, "duration", b.duration, "rounds", b.rounds)
	res, err := route.Bench(ctx, cfg)
	if err != nil {
		return err
	}
	if b.a.output == "json" {
		return b.a.printJSON(res)
	}
	fmt.Fprintf(b.a.stdout, "workers      %d\nduration     %s per side\nrouter       %.0f tx/s\ndirect pool  %.0f tx/s\nratio        %.3f\n",
		res.Workers, res.Duration, res.RouterTPS, res.DirectTPS, res.Ratio)
	return nil
}

// setup creates the database, the kv table and the tenant's role.
func (b *benchRoute) setup(ctx context.Context, c *localpg.Cluster) (route.BenchConfig, error) {
	const db, tenant = "bench", "bench"
	user := "t_" + tenant
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	password := hex.EncodeToString(pw)
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		return route.BenchConfig{}, err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		conn.Close(ctx)
		return route.BenchConfig{}, fmt.Errorf("create database: %w", err)
	}
	// The password is hex, so quoting it as a literal is safe.
	_, err = conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{user}.Sanitize()+" LOGIN PASSWORD '"+password+"'")
	conn.Close(ctx)
	if err != nil {
		return route.BenchConfig{}, fmt.Errorf("create role: %w", err)
	}
	conn, err = c.Connect(ctx, db)
	if err != nil {
		return route.BenchConfig{}, err
	}
	defer conn.Close(ctx)
	for _, s := range []string{
		"CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL)",
		"INSERT INTO kv SELECT g, md5(g::text) FROM generate_series(1, 1000) g",
		"GRANT SELECT ON kv TO " + pgx.Identifier{user}.Sanitize(),
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			return route.BenchConfig{}, fmt.Errorf("%s: %w", s, err)
		}
	}
	return route.BenchConfig{
		Host: c.Host, Port: c.Port, Database: db, Tenant: tenant, User: user, Password: password,
		Workers: b.workers, Duration: b.duration, Rounds: b.rounds,
	}, nil
}
