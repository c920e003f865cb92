package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"tenantry/check"
	"tenantry/registry"
)

func init() { register(newCheckCmd) }

// checkCmd verifies a load ledger against the tenants' current databases.
type checkCmd struct {
	a          *app
	ledger     string
	controlDSN string
	dsns       []string
	max        int
}

func newCheckCmd(a *app) *cobra.Command {
	c := &checkCmd{a: a}
	cmd := &cobra.Command{
		Use:   "check --ledger FILE (--control-dsn DSN | --dsn TENANT=DSN ...)",
		Short: "Verify a load ledger against the tenants' current databases; exit 1 on any violation",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVar(&c.ledger, "ledger", "ledger.jsonl", "ledger written by tenantry load")
	f.StringVar(&c.controlDSN, "control-dsn", os.Getenv("TENANTRY_CONTROL_DSN"), "control database DSN; tenants' databases are resolved through the registry ($TENANTRY_CONTROL_DSN)")
	f.StringArrayVar(&c.dsns, "dsn", nil, "database of one tenant as TENANT=DSN (repeatable; overrides the registry)")
	f.IntVar(&c.max, "max-violations", 1000, "list at most this many violations")
	return cmd
}

// Run checks the ledger and prints the report. Any violation makes it exit 1.
func (c *checkCmd) Run(ctx context.Context) error {
	fixed := map[string]string{}
	for _, s := range c.dsns {
		t, dsn, ok := strings.Cut(s, "=")
		if !ok || t == "" || dsn == "" {
			return usageErr("--dsn %q: want TENANT=DSN", s)
		}
		if err := registry.ValidateTenantID(t); err != nil {
			return usageErr("--dsn: %v", err)
		}
		fixed[t] = dsn
	}
	if c.controlDSN == "" && len(fixed) == 0 {
		dsn, err := c.a.controlDSN() // the local platform's, from the data directory
		if err != nil {
			return usageErr("--control-dsn or --dsn is required: %v", err)
		}
		c.controlDSN = dsn
	}
	if c.controlDSN == "" && len(fixed) == 0 {
		return usageErr("--control-dsn or --dsn is required")
	}
	f, err := os.Open(c.ledger)
	if err != nil {
		return fmt.Errorf("open ledger: %w", err)
	}
	defer f.Close()
	dbs := &tenantDatabases{controlDSN: c.controlDSN, fixed: fixed, pools: map[string]*pgxpool.Pool{}, log: c.a.log}
	defer dbs.close()
	rep, err := check.Check(ctx, f, dbs.get, check.Options{MaxViolations: c.max, Logger: c.a.log})
	if err != nil {
		return err
	}
	if c.a.output == "json" {
		if err := c.a.printJSON(rep); err != nil {
			return err
		}
	} else {
		for _, v := range rep.Violations {
			fmt.Fprintln(c.a.stdout, v)
		}
		fmt.Fprintf(c.a.stdout, "tenants %d, acknowledged orders %d (in databases %d), fulfils %d, cancels %d, refusals %d, unresolved writes %d, stock positions %d\n",
			rep.Tenants, rep.Orders, rep.OrdersInDB, rep.Fulfils, rep.Cancels, rep.Refusals, rep.Unresolved, rep.Positions)
	}
	if !rep.OK {
		return fmt.Errorf("%d violations", len(rep.Violations)+rep.Omitted)
	}
	if c.a.output != "json" {
		fmt.Fprintln(c.a.stdout, "ok")
	}
	return nil
}

// tenantDatabases opens one superuser pool per database a tenant is served
// from: a --dsn given for it, else its alias's primary in the registry.
type tenantDatabases struct {
	controlDSN string
	fixed      map[string]string
	log        *slog.Logger

	mu    sync.Mutex
	snap  *registry.Snapshot
	pools map[string]*pgxpool.Pool // by DSN
}

func (d *tenantDatabases) get(ctx context.Context, tenant string) (check.Querier, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg, key, err := d.poolConfig(ctx, tenant)
	if err != nil {
		return nil, err
	}
	if p, ok := d.pools[key]; ok {
		return p, nil
	}
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database of tenant %s: %w", tenant, err)
	}
	d.pools[key] = p
	return p, nil
}

// poolConfig returns the pool config of tenant's database and a key that
// names that database.
func (d *tenantDatabases) poolConfig(ctx context.Context, tenant string) (*pgxpool.Config, string, error) {
	if dsn, ok := d.fixed[tenant]; ok {
		cfg, err := pgxpool.ParseConfig(dsn)
		return cfg, "dsn " + dsn, err
	}
	if d.controlDSN == "" {
		return nil, "", fmt.Errorf("tenant %s: no --dsn and no --control-dsn", tenant)
	}
	if d.snap == nil {
		store, err := registry.OpenStore(ctx, d.controlDSN, nil)
		if err != nil {
			return nil, "", err
		}
		d.snap, err = store.Snapshot(ctx)
		store.Close()
		if err != nil {
			return nil, "", err
		}
	}
	_, ep, err := d.snap.Resolve(tenant)
	if err != nil {
		return nil, "", err
	}
	d.log.Info("tenant resolved", "tenant", tenant, "alias", ep.Alias, "host", ep.Host, "port", ep.Port, "database", ep.Database)
	// ParseConfig("") takes libpq's environment defaults, PGPASSWORD
	// included; the superuser on the alias's primary reads every tenant.
	cfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, "", err
	}
	cc := cfg.ConnConfig
	cc.Host, cc.Port, cc.Database, cc.User = ep.Host, uint16(ep.Port), ep.Database, "postgres"
	cfg.MaxConns = 4
	return cfg, fmt.Sprintf("%s:%d/%s", ep.Host, ep.Port, ep.Database), nil
}

func (d *tenantDatabases) close() {
	for _, p := range d.pools {
		p.Close()
	}
}
