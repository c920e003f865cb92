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

// `tenantry backup create|verify|restore`. The database is given by --dsn
// (a superuser DSN of the tenant's database) until the commands resolve the
// tenant's alias through the control plane.
func init() { register(newBackupCmd) }

func newBackupCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Short: "Logical backups of one tenant's rows"}
	var dsn, dir, from string
	create := &cobra.Command{
		Use: "create TENANT", Short: "Back up a tenant's rows to a directory", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dsn == "" {
				return usageErr("--dsn is required")
			}
			d := dir
			if d == "" {
				d = filepath.Join(a.dataDir, "backups", args[0]+"-"+time.Now().UTC().Format("20060102T150405Z"))
			}
			return a.withConn(cmd.Context(), dsn, func(conn *pgx.Conn) error {
				m, err := backup.Create(cmd.Context(), conn, args[0], d, a.backupProgress())
				return a.printManifest(d, m, err)
			})
		},
	}
	create.Flags().StringVar(&dsn, "dsn", "", "superuser DSN of the tenant's database")
	create.Flags().StringVar(&dir, "dir", "", "backup directory to create (default: <data-dir>/backups/TENANT-TIME)")
	verifyCmd := &cobra.Command{
		Use: "verify DIR", Short: "Check a backup's files against its manifest", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := backup.Verify(args[0])
			return a.printManifest(args[0], m, err)
		},
	}
	restore := &cobra.Command{
		Use: "restore TENANT --from DIR --dsn DSN", Short: "Restore a tenant's backup into a database with none of its rows",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dsn == "" || from == "" {
				return usageErr("--from and --dsn are required")
			}
			return a.withConn(cmd.Context(), dsn, func(conn *pgx.Conn) error {
				m, err := backup.Restore(cmd.Context(), conn, from, args[0], a.backupProgress())
				return a.printManifest(from, m, err)
			})
		},
	}
	restore.Flags().StringVar(&from, "from", "", "backup directory")
	restore.Flags().StringVar(&dsn, "dsn", "", "superuser DSN of the target database (--to ALIAS comes with the control plane client)")
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
