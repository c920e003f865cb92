package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Event kinds of standbys, switchovers and failovers.
const (
	EventStandbyAdded   = "cluster.standby_added"
	EventStandbyRemoved = "cluster.standby_removed"
	EventSwitchover     = "cluster.switchover"
	EventFailover       = "cluster.failover"
	EventRejoined       = "cluster.member_rejoined"
	EventUpgraded       = "cluster.upgraded"
	EventFollowed       = "cluster.primary_followed"
	EventSyncApplied    = "cluster.sync_applied"
	EventSyncDegraded   = "cluster.sync_degraded"
	EventMemberFenced   = "cluster.member_fenced"
)

// PauseTenants pauses several tenants in one transaction (one registry
// version, so routers see them paused together): each tenant whose epoch
// equals want[tenant] becomes paused on its alias at epoch+1. If any epoch
// differs, nothing changes and the error is ErrConflict. It returns the
// paused epochs.
func (s *Store) PauseTenants(ctx context.Context, want map[string]int64) (map[string]int64, error) {
	var got map[string]int64
	err := s.write(ctx, func(tx pgx.Tx, _ int64) error {
		var err error
		got, err = pauseTenants(ctx, tx, want)
		return err
	})
	if err != nil {
		return nil, err
	}
	return got, nil
}

// pauseTenants pauses every tenant of want at its epoch in tx, or none (the
// caller rolls back on an error): ErrConflict when one is no longer at its
// epoch.
func pauseTenants(ctx context.Context, tx pgx.Tx, want map[string]int64) (map[string]int64, error) {
	got := make(map[string]int64, len(want))
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if err := ValidateTenantID(id); err != nil {
			return nil, err
		}
		var epoch int64
		err := tx.QueryRow(ctx, `UPDATE tenants SET state = 'paused', epoch = epoch + 1
			WHERE id = $1 AND epoch = $2 RETURNING epoch`, id, want[id]).Scan(&epoch)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("pause tenant %s: %w: its epoch is no longer %d", id, ErrConflict, want[id])
		}
		if err != nil {
			return nil, dbErr("pause tenant "+id, err)
		}
		got[id] = epoch
	}
	return got, nil
}

// PauseForFailover pauses the tenants of want as PauseTenants does and, in
// the same transaction, records them with cluster as paused by its failover
// (clusters.failover_paused). It returns every tenant the record holds:
// those paused now and those an earlier failover of the cluster paused and
// did not resume (cut short: its control plane died, or its last write
// failed), which are paused still and no longer in want. Switch resumes
// them all and clears the record; an entry whose tenant moved on to
// another epoch meanwhile is left as it is there, so a stale one is
// harmless.
func (s *Store) PauseForFailover(ctx context.Context, cluster string, want map[string]int64) (map[string]int64, error) {
	if err := ValidateName("cluster", cluster); err != nil {
		return nil, err
	}
	var out map[string]int64
	err := s.write(ctx, func(tx pgx.Tx, _ int64) error {
		var rec map[string]int64
		if err := tx.QueryRow(ctx, "SELECT failover_paused FROM clusters WHERE name = $1 FOR UPDATE", cluster).Scan(&rec); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("cluster %s: %w", cluster, ErrNotFound)
			}
			return dbErr("read the failover record of cluster "+cluster, err)
		}
		paused, err := pauseTenants(ctx, tx, want)
		if err != nil {
			return err
		}
		out = make(map[string]int64, len(rec)+len(paused))
		maps.Copy(out, rec)
		maps.Copy(out, paused)
		_, err = tx.Exec(ctx, "UPDATE clusters SET failover_paused = $2 WHERE name = $1", cluster, out)
		return dbErr("record the failover's pause on cluster "+cluster, err)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Switch makes newPrimary the cluster's primary (the old primary gets
// oldRole, RoleStandby or RoleFenced) and, in the same transaction, makes
// active again every tenant of resume still paused at the epoch given
// (epoch+1): routers see the new primary and the end of the pause in one
// snapshot. A tenant no longer at that epoch is left as it is (a re-run
// after a crash finds the tenants already resumed). With RoleFenced (a
// failover: the old primary is gone) the cluster is marked FollowPending in
// the same transaction, until FollowDone: its other standbys still follow
// the old primary.
func (s *Store) Switch(ctx context.Context, cluster, newPrimary string, oldRole Role, resume map[string]int64) error {
	if err := validateNames("cluster", cluster, "member", newPrimary); err != nil {
		return err
	}
	if oldRole != RoleStandby && oldRole != RoleFenced {
		return fmt.Errorf("%w: old primary role %q (want standby or fenced)", ErrInvalid, oldRole)
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		if err := setPrimary(ctx, tx, cluster, newPrimary, oldRole); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE clusters SET failover_paused = '{}', follow_pending = follow_pending OR $2
			WHERE name = $1 AND (failover_paused <> '{}' OR follow_pending <> (follow_pending OR $2))`, cluster, oldRole == RoleFenced); err != nil {
			return dbErr("clear the failover record of cluster "+cluster, err)
		}
		return resumeTenants(ctx, tx, resume)
	})
}

// FollowDone clears the cluster's FollowPending: its standbys follow its
// primary.
func (s *Store) FollowDone(ctx context.Context, cluster string) error {
	if err := ValidateName("cluster", cluster); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		tag, err := tx.Exec(ctx, "UPDATE clusters SET follow_pending = false WHERE name = $1 AND follow_pending", cluster)
		if err != nil {
			return dbErr("clear the pending follow of cluster "+cluster, err)
		}
		if tag.RowsAffected() == 0 {
			var ok bool
			if err := tx.QueryRow(ctx, "SELECT true FROM clusters WHERE name = $1", cluster).Scan(&ok); errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("cluster %s: %w", cluster, ErrNotFound)
			} else if err != nil {
				return dbErr("read cluster "+cluster, err)
			}
		}
		return nil
	})
}

// ResumeTenants makes active again every tenant of resume still paused at
// the epoch given, in one transaction; others are left as they are.
func (s *Store) ResumeTenants(ctx context.Context, resume map[string]int64) error {
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		return resumeTenants(ctx, tx, resume)
	})
}

func resumeTenants(ctx context.Context, tx pgx.Tx, resume map[string]int64) error {
	for _, id := range slices.Sorted(maps.Keys(resume)) {
		if _, err := tx.Exec(ctx, `UPDATE tenants SET state = 'active', epoch = epoch + 1
			WHERE id = $1 AND epoch = $2 AND state = 'paused'`, id, resume[id]); err != nil {
			return dbErr("resume tenant "+id, err)
		}
	}
	return nil
}
