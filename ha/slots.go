package ha

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"tenantry/registry"
)

// dropStaleSlots drops the logical replication slots a former primary
// carried into its life as a standby (a clean stop and a follow keep its
// pg_replslot): PostgreSQL 15 cannot decode on a standby, so none of them
// can serve again, yet each would keep WAL on the standby (up to
// max_slot_wal_keep_size) and, through hot_standby_feedback, old catalog
// rows on the primary. The moves they belonged to rebuild their links on
// the new primary (package move). It returns the slots dropped.
func (h *Service) dropStaleSlots(ctx context.Context, cluster, member string) ([]string, error) {
	var dropped []string
	err := h.withMember(ctx, cluster, member, func(conn *pgx.Conn, _ *registry.Cluster) error {
		rows, err := conn.Query(ctx, "SELECT slot_name::text FROM pg_replication_slots WHERE slot_type = 'logical' AND NOT active")
		if err != nil {
			return err
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, n := range names {
			if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", n); err != nil {
				return fmt.Errorf("drop slot %s: %w", n, err)
			}
			dropped = append(dropped, n)
		}
		return nil
	})
	if err != nil {
		return dropped, fmt.Errorf("drop stale logical slots on %s: %w", member, err)
	}
	return dropped, nil
}
