package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"tenantry/backup"
)

// `tenantry backup create|verify|restore`. Databases are resolved through
// the registry (the tenant's current alias; --to ALIAS), or given by --dsn.
func init() { register(newBackupCmd) }

func newBackupCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Short: "Logical backups of one tenant's rows"}
	var dsn, dir, from, to, secretFile string
	create := &cobra.Command{
		Use: "create TENANT", Short: "Back up a tenant's rows to a directory", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dsn == "" {
				var err error
				if dsn, err = a.tenantDSN(cmd.Context(), args[0]); err != nil {
					return err
				}
			}
			d := dir
			if d == "" {
				d = filepath.Join(a.dataDir, "backups", args[0]+"-"+time.Now().UTC().Format("20060102T150405Z"))
			}
			key, err := a.backupKey(secretFile)
			if err != nil {
				return err
			}
			return a.withConn(cmd.Context(), dsn, func(conn *pgx.Conn) error {
				m, err := backup.Create(cmd.Context(), conn, args[0], d, key, a.backupProgress())
				return a.printManifest(d, m, err)
			})
		},
	}
	create.Flags().StringVar(&dsn, "dsn", "", "superuser DSN of the tenant's database (default: resolved through the registry)")
	create.Flags().StringVar(&dir, "dir", "", "backup directory to create (default: <data-dir>/backups/TENANT-TIME)")
	verifyCmd := &cobra.Command{
		Use: "verify DIR", Short: "Check a backup's files against its manifest", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := a.backupKey(secretFile)
			if err != nil {
				return err
			}
			m, err := backup.Verify(args[0], key)
			return a.printManifest(args[0], m, err)
		},
	}
	restore := &cobra.Command{
		Use: "restore TENANT --from DIR --to ALIAS", Short: "Restore a tenant's backup into a database with none of its rows",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" || (dsn == "" && to == "") {
				return usageErr("--from and --to ALIAS (or --dsn) are required")
			}
			if dsn == "" {
				var err error
				if dsn, err = a.aliasDSN(cmd.Context(), to); err != nil {
					return err
				}
			}
			key, err := a.backupKey(secretFile)
			if err != nil {
				return err
			}
			return a.withConn(cmd.Context(), dsn, func(conn *pgx.Conn) error {
				m, err := backup.Restore(cmd.Context(), conn, from, args[0], key, a.backupProgress())
				return a.printManifest(from, m, err)
			})
		},
	}
	restore.Flags().StringVar(&from, "from", "", "backup directory")
	restore.Flags().StringVar(&to, "to", "", "alias to restore into")
	restore.Flags().StringVar(&dsn, "dsn", "", "superuser DSN of the target database (instead of --to)")
	cmd.PersistentFlags().StringVar(&secretFile, "secret-file", "",
		"file holding the platform secret, which keys the backups' MAC (else $TENANTRY_SECRET, else the data directory's)")
	cmd.AddCommand(create, verifyCmd, restore)
	return cmd
}

func (a *app) withConn(ctx context.Context, dsn string, f func(*pgx.Conn) error) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return f(conn)
}

func (a *app) backupProgress() backup.Progress {
	return func(table string, rows int64) { a.log.Debug("backup progress", "table", table, "rows", rows) }
}

func (a *app) printManifest(dir string, m *backup.Manifest, err error) error {
	if err != nil {
		return err
	}
	if a.output == "json" {
		return a.printJSON(map[string]any{"dir": dir, "manifest": m})
	}
	fmt.Fprintf(a.stdout, "backup %s: tenant %s from %s at %s\n", dir, m.Tenant, m.Source, m.CreatedAt.Format(time.RFC3339))
	for _, t := range m.Tables {
		fmt.Fprintf(a.stdout, "  %-30s %10d rows  sha256 %s\n", t.Table, t.Rows, t.SHA256[:16])
	}
	return nil
}
