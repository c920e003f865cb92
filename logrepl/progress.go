package logrepl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"tenantry/registry"
)

// Table sync states of pg_subscription_rel.srsubstate.
const (
	SyncInit     = "i" // waiting for a sync worker
	SyncCopying  = "d" // initial copy running
	SyncFinished = "f" // copy done, catching up with the apply worker
	SyncSynced   = "s" // caught up, handing over
	SyncReady    = "r" // replicated by the apply worker
)

// TableSync is the initial-copy progress of one table: of a subscription's
// table sync (CopyProgress), or of CopyLink, which reports SyncInit,
// SyncCopying and SyncReady (copied and committed).
type TableSync struct {
	Table string `json:"table"`
	State string `json:"state"`
	// Rows copied: while copying, tuples processed by the running COPY
	// (pg_stat_progress_copy; the copy commits only at its end); once
	// copied, the tenant's rows in the target table.
	Rows int64 `json:"rows"`
	// Bytes copied so far, by CopyLink (binary COPY format); the
	// subscription's own sync does not report them.
	Bytes int64 `json:"bytes,omitempty"`
	// IndexesBuilt are the indexes CopyLink built after loading the table
	// rather than during its load (CopyOptions.DeferIndexPages).
	IndexesBuilt int `json:"indexes_built,omitempty"`
}

// CopyProgress reads the initial-copy state of every table of subscription
// sub on the target, and the rows of tenant copied so far. A subscription
// that does not exist is ErrSubscriptionBroken.
func CopyProgress(ctx context.Context, dst Querier, sub, tenant string) ([]TableSync, error) {
	return copyProgress(ctx, dst, sub, tenant, nil)
}

// copyProgress is CopyProgress with a cache of row counts of tables whose
// copy is done: they only grow by replication afterwards, and re-counting
// them on every poll would scan them again.
func copyProgress(ctx context.Context, dst Querier, sub, tenant string, done map[string]int64) ([]TableSync, error) {
	if err := validIdent("subscription", sub); err != nil {
		return nil, err
	}
	if err := registry.ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	if ok, err := subscriptionExists(ctx, dst, sub); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%w: subscription %s does not exist", ErrSubscriptionBroken, sub)
		}
		return nil, fmt.Errorf("copy progress: %w", err)
	}
	rows, err := dst.Query(ctx, `
		SELECT n.nspname, c.relname, sr.srsubstate::text,
			coalesce((SELECT max(p.tuples_processed) FROM pg_stat_progress_copy p
				WHERE p.relid = sr.srrelid AND p.datname = current_database()), 0)
		FROM pg_subscription s
		JOIN pg_subscription_rel sr ON sr.srsubid = s.oid
		JOIN pg_class c ON c.oid = sr.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		ORDER BY 1, 2`, sub)
	if err != nil {
		return nil, fmt.Errorf("copy progress: %w", err)
	}
	var out []TableSync
	var ts TableSync
	var t table
	_, err = pgx.ForEachRow(rows, []any{&t.schema, &t.name, &ts.State, &ts.Rows}, func() error {
		ts.Table = t.String()
		out = append(out, ts)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copy progress: %w", err)
	}
	for i := range out {
		if out[i].State == SyncInit || out[i].State == SyncCopying {
			continue
		}
		if n, ok := done[out[i].Table]; ok {
			out[i].Rows = n
			continue
		}
		counts, err := CountRows(ctx, dst, tenant, []string{out[i].Table})
		if err != nil {
			return nil, err
		}
		out[i].Rows = counts[out[i].Table]
		if done != nil {
			done[out[i].Table] = out[i].Rows
		}
	}
	return out, nil
}

// WaitSynced polls CopyProgress until every table of sub is ready (SyncReady),
// calling onProgress (if not nil) after every poll that changed something.
// A sync error counted by pg_stat_subscription_stats while waiting (for
// example rows of the tenant already on the target) is ErrSubscriptionBroken.
func WaitSynced(ctx context.Context, dst Querier, sub, tenant string, onProgress func([]TableSync)) error {
	base, err := Status(ctx, dst, sub)
	if err != nil {
		return err
	}
	done := map[string]int64{}
	var last string
	for {
		p, err := copyProgress(ctx, dst, sub, tenant, done)
		if err != nil {
			return err
		}
		if s := fmt.Sprint(p); s != last && onProgress != nil {
			onProgress(p)
			last = s
		}
		if allReady(p) {
			return nil
		}
		st, err := Status(ctx, dst, sub)
		if err != nil {
			return err
		}
		if st.SyncErrors > base.SyncErrors || st.ApplyErrors > base.ApplyErrors {
			return fmt.Errorf("wait for initial copy of %s: %w: %d sync, %d apply errors (see the target's server log)",
				sub, ErrSubscriptionBroken, st.SyncErrors-base.SyncErrors, st.ApplyErrors-base.ApplyErrors)
		}
		if err := sleep(ctx, 10*pollEvery); err != nil {
			return fmt.Errorf("wait for initial copy of %s: %w", sub, err)
		}
	}
}

func allReady(p []TableSync) bool {
	for _, t := range p {
		if t.State != SyncReady {
			return false
		}
	}
	return len(p) > 0
}

// SlotState is a replication slot as the publisher sees it.
type SlotState struct {
	Active         bool
	ConfirmedFlush LSN // what the subscriber reported applied and flushed
	WALStatus      string
	// LagBytes is pg_current_wal_lsn() - confirmed_flush_lsn.
	LagBytes int64
}

// Slot reads slot name on the publisher. A slot that is absent or whose WAL
// was removed (wal_status 'lost') is ErrSlotLost.
func Slot(ctx context.Context, src Querier, name string) (SlotState, error) {
	if err := validIdent("slot", name); err != nil {
		return SlotState{}, err
	}
	var s SlotState
	var flush *string
	var status *string
	var lag *int64
	err := src.QueryRow(ctx, `
		SELECT active, confirmed_flush_lsn::text, wal_status,
			(pg_current_wal_lsn() - confirmed_flush_lsn)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&s.Active, &flush, &status, &lag)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("%w: slot %s does not exist", ErrSlotLost, name)
	}
	if err != nil {
		return s, fmt.Errorf("read slot %s: %w", name, err)
	}
	if status != nil {
		s.WALStatus = *status
	}
	if s.WALStatus == "lost" {
		return s, fmt.Errorf("%w: slot %s was invalidated (wal_status lost)", ErrSlotLost, name)
	}
	if lag != nil {
		s.LagBytes = *lag
	}
	s.ConfirmedFlush, err = scanLSN(flush)
	return s, err
}

// Lag returns how many bytes of WAL the publisher has written that the
// subscriber of slot has not confirmed: pg_current_wal_lsn() -
// confirmed_flush_lsn. ErrSlotLost when the slot is gone or invalidated.
func Lag(ctx context.Context, src Querier, slot string) (int64, error) {
	s, err := Slot(ctx, src, slot)
	return s.LagBytes, err
}

// SubStatus is a subscription as the subscriber sees it.
type SubStatus struct {
	Enabled bool
	// WorkerPID is the apply worker's pid, 0 when none runs (disabled, or
	// restarting after an error).
	WorkerPID int
	// ReceivedLSN is the last position received from the publisher.
	ReceivedLSN LSN
	// LatestEndLSN is the position of the last keepalive the apply worker
	// processed; it handles messages in order, so everything the publisher
	// sent before it is applied (committed, not necessarily flushed).
	LatestEndLSN LSN
	// LastReceipt is when the last message arrived (zero if none).
	LastReceipt time.Time
	// ApplyErrors and SyncErrors count errors since the statistics were
	// reset (pg_stat_subscription_stats); growth means a failing worker.
	ApplyErrors, SyncErrors int64
	// OriginLSN is the publisher position applied and flushed here
	// (pg_replication_origin_progress of the subscription's origin): the
	// end of the last transaction applied.
	OriginLSN LSN
}

// Status reads subscription sub on the subscriber; a subscription that does
// not exist is ErrSubscriptionBroken.
func Status(ctx context.Context, dst Querier, sub string) (SubStatus, error) {
	if err := validIdent("subscription", sub); err != nil {
		return SubStatus{}, err
	}
	var s SubStatus
	var pid *int32
	var recv, end, origin *string
	var receipt *time.Time
	err := dst.QueryRow(ctx, `
		SELECT s.subenabled, st.pid, st.received_lsn::text, st.latest_end_lsn::text, st.last_msg_receipt_time,
			coalesce(ss.apply_error_count, 0), coalesce(ss.sync_error_count, 0),
			pg_replication_origin_progress('pg_' || s.oid, true)::text
		FROM pg_subscription s
		LEFT JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL
		LEFT JOIN pg_stat_subscription_stats ss ON ss.subid = s.oid
		WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
		sub).Scan(&s.Enabled, &pid, &recv, &end, &receipt, &s.ApplyErrors, &s.SyncErrors, &origin)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("%w: subscription %s does not exist", ErrSubscriptionBroken, sub)
	}
	if err != nil {
		return s, fmt.Errorf("read subscription %s: %w", sub, err)
	}
	if pid != nil {
		s.WorkerPID = int(*pid)
	}
	if receipt != nil {
		s.LastReceipt = *receipt
	}
	var errs [3]error
	s.ReceivedLSN, errs[0] = scanLSN(recv)
	s.LatestEndLSN, errs[1] = scanLSN(end)
	s.OriginLSN, errs[2] = scanLSN(origin)
	return s, errors.Join(errs[:]...)
}
