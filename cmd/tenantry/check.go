package main

import (
	"context"
	"fmt"
	"os"
	"strings"

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
	dbs := &check.RegistryDatabases{Fixed: fixed, Logger: c.a.log}
	if c.controlDSN != "" {
		secret, err := c.a.platformSecret()
		if err != nil {
			return err
		}
		store, err := registry.OpenStore(ctx, c.controlDSN, nil)
		if err != nil {
			return err
		}
		defer store.Close()
		if dbs.Snapshot, err = store.Snapshot(ctx); err != nil {
			return err
		}
		if dbs.Credentials, err = registry.NewVault(store, secret); err != nil {
			return err
		}
	}
	defer dbs.Close()
	rep, err := check.Check(ctx, f, dbs.Get, check.Options{MaxViolations: c.max, Logger: c.a.log})
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
