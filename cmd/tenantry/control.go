package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"tenantry/control"
	"tenantry/httpedge"
)

func init() { register(newControlCmd) }

// controlCmd is `tenantry control`: one control-plane replica against any
// registry database and the clusters registered in it.
type controlCmd struct {
	a          *app
	listen     string
	dsn        string
	secretFile string
	tokenFile  string
	backupDir  string
	addrFile   string
	leaseTTL   time.Duration
	gatewayURL string
	readerRole string
}

func newControlCmd(a *app) *cobra.Command {
	c := &controlCmd{a: a}
	cmd := &cobra.Command{
		Use:   "control",
		Short: "Run a control-plane replica: the API, the workflow runner (moves) and /metrics",
		Long: `Runs one replica of the control plane against the registry in the control database,
creating the database and its tables on first start. Several replicas may run against one
registry: workflow leases decide which one acts on a move, any replica answers the API,
and when the acting replica dies another takes over its workflows within a second.

Secrets never come from flag values: the platform secret from $TENANTRY_SECRET or
--secret-file, the admin token from $TENANTRY_ADMIN_TOKEN or --token-file, the control
database's password from $TENANTRY_CONTROL_DSN, $PGPASSWORD or ~/.pgpass.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVar(&c.listen, "listen", "127.0.0.1:7070", "API address (port 0: any free port)")
	f.StringVar(&c.dsn, "control-dsn", "", "control database DSN without a password ($TENANTRY_CONTROL_DSN)")
	f.StringVar(&c.secretFile, "secret-file", "", "file holding the platform secret (else $TENANTRY_SECRET)")
	f.StringVar(&c.tokenFile, "token-file", "", "file holding the admin token (else $TENANTRY_ADMIN_TOKEN)")
	f.StringVar(&c.backupDir, "backup-dir", "backups", "directory for the backups moves take")
	f.StringVar(&c.addrFile, "addr-file", "", "write the API's URL to this file once it listens")
	f.StringVar(&c.readerRole, "reader-role", "", "database role the gateways and application instances read the registry as: granted what they need on every start")
	f.DurationVar(&c.leaseTTL, "lease-ttl", 10*time.Second, "workflow lease; bounds takeover from a replica that hangs (a dead one is taken over at once)")
	f.StringVar(&c.gatewayURL, "gateway-url", "", "a gateway's URL, for rollout and smoke previews")
	return cmd
}

// Run serves until ctx ends, then hands its workflows back.
func (c *controlCmd) Run(ctx context.Context) error {
	dsn, err := c.controlDSN()
	if err != nil {
		return err
	}
	secret, err := secretFrom(c.secretFile, "TENANTRY_SECRET", "--secret-file")
	if err != nil {
		return err
	}
	token, err := secretFrom(c.tokenFile, "TENANTRY_ADMIN_TOKEN", "--token-file")
	if err != nil {
		return err
	}
	log := c.a.log.With("component", "control")
	cfg := control.PlaneConfig{ControlDSN: dsn, Secret: []byte(secret), AdminToken: token, Listen: c.listen, GatewayURL: c.gatewayURL,
		BackupDir: c.backupDir, LeaseTTL: c.leaseTTL, ReaderRole: c.readerRole, Logger: log}
	cfg.Move.Hook = control.MoveFailpoint(os.Getenv("TENANTRY_FAILPOINT"), os.Getenv("TENANTRY_FAILPOINT_FILE"))
	p, err := control.StartPlane(ctx, cfg)
	if err != nil {
		return err
	}
	if c.addrFile != "" {
		if err := httpedge.WriteAddrFile(c.addrFile, p.URL); err != nil {
			p.Stop(context.Background())
			return err
		}
	}
	fmt.Fprintf(c.a.stderr, "control plane replica listening on %s (runner %s)\n", p.URL, p.Runner.Owner())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p.Stop(sctx)
	return nil
}

// controlDSN takes the DSN from the flag or $TENANTRY_CONTROL_DSN; a flag
// value that carries a password is refused, as it would show in `ps`.
func (c *controlCmd) controlDSN() (string, error) {
	if c.dsn == "" {
		if dsn := os.Getenv("TENANTRY_CONTROL_DSN"); dsn != "" {
			return dsn, nil
		}
		return "", usageErr("--control-dsn or $TENANTRY_CONTROL_DSN is required")
	}
	cfg, err := pgx.ParseConfig(c.dsn)
	if err != nil {
		return "", usageErr("--control-dsn: %v", err)
	}
	if cfg.Password != "" && os.Getenv("PGPASSWORD") != cfg.Password {
		return "", usageErr("--control-dsn must not carry a password (it would show in ps): use $TENANTRY_CONTROL_DSN, $PGPASSWORD or ~/.pgpass")
	}
	return c.dsn, nil
}

// secretFrom reads a secret from file (trimmed) when given, else from the
// environment variable env.
func secretFrom(file, env, flag string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", flag, err)
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", usageErr("%s: %s is empty", flag, file)
	}
	if s := os.Getenv(env); s != "" {
		return s, nil
	}
	return "", usageErr("$%s or %s is required", env, flag)
}

// hexSecretFrom is secretFrom for a key written in hex.
func hexSecretFrom(file, env, flag string) ([]byte, error) {
	s, err := secretFrom(file, env, flag)
	if err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, usageErr("%s ($%s): not a hex key", flag, env)
	}
	return b, nil
}
