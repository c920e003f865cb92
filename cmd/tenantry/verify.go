package main

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"tenantry/verify"
)

// `tenantry verify TENANT --against ALIAS`: chunked parity of a tenant's rows
// between the database it is served from and another alias, both resolved
// through the registry (or given by DSN).
func init() { register(newVerifyCmd) }

func newVerifyCmd(a *app) *cobra.Command {
	var srcDSN, dstDSN, against string
	var chunk, parallel int
	cmd := &cobra.Command{
		Use:   "verify TENANT --against ALIAS",
		Short: "Compare a tenant's rows where it is served from with another alias (chunked parity)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var err error
			if srcDSN == "" {
				if srcDSN, err = a.tenantDSN(ctx, args[0]); err != nil {
					return err
				}
			}
			if dstDSN == "" {
				if against == "" {
					return usageErr("--against ALIAS (or --target-dsn) is required")
				}
				if dstDSN, err = a.aliasDSN(ctx, against); err != nil {
					return err
				}
			}
			src, err := pgxpool.New(ctx, srcDSN)
			if err != nil {
				return fmt.Errorf("source: %w", err)
			}
			defer src.Close()
			dst, err := pgxpool.New(ctx, dstDSN)
			if err != nil {
				return fmt.Errorf("target: %w", err)
			}
			defer dst.Close()
			rep, err := verify.Compare(ctx, src, dst, args[0], verify.Options{ChunkRows: chunk, Parallel: parallel})
			if rep != nil {
				if perr := a.printVerify(rep); perr != nil {
					return perr
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&against, "against", "", "alias to compare with")
	cmd.Flags().StringVar(&srcDSN, "source-dsn", "", "DSN of the tenant's current database (default: resolved through the registry)")
	cmd.Flags().StringVar(&dstDSN, "target-dsn", "", "DSN of the database to compare with")
	cmd.Flags().IntVar(&chunk, "chunk-rows", verify.DefaultChunkRows, "rows per compared key range")
	cmd.Flags().IntVar(&parallel, "parallel", 0, "key ranges compared at once (default: twice the number of CPUs)")
	return cmd
}

func (a *app) printVerify(rep *verify.Report) error {
	if a.output == "json" {
		return a.printJSON(rep)
	}
	for _, t := range rep.Tables {
		fmt.Fprintf(a.stdout, "%-30s %10d rows %6d chunks %4d differing\n", t.Table, t.Rows, t.Chunks, t.Mismatches)
		for _, k := range t.Keys {
			fmt.Fprintf(a.stdout, "    differs: %s\n", k)
		}
	}
	status := "ok"
	if !rep.OK {
		status = "DIFFERENT"
	}
	fmt.Fprintf(a.stdout, "tenant %s: %s, %d rows in %v (%.0f rows/s)\n", rep.Tenant, status, rep.Rows, rep.Elapsed.Round(1e6), rep.RowsPerSec)
	return nil
}
