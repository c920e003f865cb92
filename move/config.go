package move

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/logrepl"
	"tenantry/registry"
)

// Kind is the workflow kind of tenant moves; one move per tenant may be
// active at a time.
const Kind = "move"

// Signals an operator sends to a move.
const (
	SignalPromote  = "promote"  // flip the tenant to the other side (ready or hypercare)
	SignalCutback  = "cutback"  // flip the tenant back to the source (hypercare)
	SignalComplete = "complete" // end the move (hypercare)
	SignalCancel   = "cancel"   // drop the target's copy (before promotion, or after cutback)
)

// Registry is what the move needs of the registry (*registry.Store).
type Registry interface {
	Snapshot(ctx context.Context) (*registry.Snapshot, error)
	SetPlacement(ctx context.Context, tenant string, expectEpoch int64, alias string, state registry.State) (*registry.Tenant, error)
	WaitAcks(ctx context.Context, tenant string, epoch int64, within time.Duration) error
	Routers(ctx context.Context) ([]registry.RouterInstance, error)
}

// Window is a daily maintenance window in UTC, [Start, End) as offsets from
// midnight; End < Start wraps past midnight.
type Window struct {
	Start, End time.Duration
}

// Contains reports whether t falls in the window.
func (w Window) Contains(t time.Time) bool {
	t = t.UTC()
	d := time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second
	if w.Start <= w.End {
		return d >= w.Start && d < w.End
	}
	return d >= w.Start || d < w.End
}

// Config configures moves. Zero values mean the documented defaults.
type Config struct {
	Registry Registry
	// Secret derives tenant role passwords (provision.Password).
	Secret []byte
	// Credentials gives each cluster's admin credential (a superuser or a
	// replication-capable owner of the tables), used for replication and
	// DDL on both sides. Required.
	Credentials registry.ClusterCredentials
	// BackupDir holds the backups taken in prepare. Required.
	BackupDir string
	// SequenceGap is added to the target's sequences at promotion (the
	// documented jump in ids); default logrepl.DefaultSequenceGap.
	SequenceGap int64
	// LagBound is the most replication lag (bytes) a promotion starts with;
	// default 16 MiB.
	LagBound int64
	// AckTimeout bounds the wait for routers to acknowledge a pause;
	// default 5 s.
	AckTimeout time.Duration
	// RouterLive: routers with a heartbeat this recent must acknowledge a
	// pause; default 5 s. RouterDead: routers silent for longer are taken for
	// gone (the fence still stops them); between the two a promotion is
	// refused as the router's state is unknown. Default 60 s.
	RouterLive, RouterDead time.Duration
	// ApplyTimeout bounds the wait, inside the pause, for the target to apply
	// the source's last change; default 10 s.
	ApplyTimeout time.Duration
	// CountInPause compares per-table row counts of both sides inside the
	// pause (one index scan of the tenant's rows per table, both sides at
	// once). Default true; set SkipCountInPause to leave it to verify.
	SkipCountInPause bool
	// CountInPauseMaxRows: tenants with more rows than this (at prepare)
	// are not counted inside the pause — the count scans every row of the
	// tenant on both sides and dominates the pause of a large tenant —
	// but verified with chunked parity right after the flip instead, while
	// the link back keeps the old side in sync (so a cutback loses
	// nothing). Default 250,000; negative means always count in the pause.
	CountInPauseMaxRows int64
	// Window limits promotions and cutbacks to a maintenance window unless
	// forced; nil means any time.
	Window *Window
	// Hypercare is how long after a promotion cutback stays possible before
	// the move completes by itself; default 72 h.
	Hypercare time.Duration
	// PurgeBatch is the rows deleted per statement when purging; default 5,000.
	PurgeBatch int
	// LinkCheckInterval is how often a move waiting in ready or hypercare
	// wakes to check its replication link for a failover of one of its
	// clusters or an invalidated slot (failover.go); default 30 s.
	LinkCheckInterval time.Duration
	// CopyWorkers is how many tables the initial copy loads at once
	// (logrepl.CopyLink); default logrepl.DefaultCopyWorkers, at most 6
	// (each worker holds a connection of the step's pools on both sides).
	CopyWorkers int
	// DeferIndexPages: a table of at least this many pages (all tenants,
	// on the source) that is empty on the target is loaded before its
	// indexes are built (logrepl.CopyOptions.DeferIndexPages); default
	// logrepl.DefaultDeferIndexPages, negative: never.
	DeferIndexPages int
	// SchemaVersion reads the application schema version of a tenant
	// database (oms.SchemaVersion); a move refuses to start when source and
	// target differ. Required.
	SchemaVersion func(ctx context.Context, db *pgxpool.Pool) (int, error)
	// Backup takes the tenant's logical backup from the source into dir
	// (prepare); VerifyBackup checks one before the source is purged
	// (complete). Required.
	Backup       func(ctx context.Context, src *pgxpool.Pool, tenant, dir string) error
	VerifyBackup func(dir string) error
	// Parity compares the tenant's rows on both sides in chunks; catchUp
	// waits for the link to apply the source's current position and is
	// called before differing chunks are checked again; progress reports
	// rows and chunks compared so far, one call at a time (possibly from
	// another goroutine, possibly skipping counts). Required.
	Parity func(ctx context.Context, src, dst *pgxpool.Pool, tenant string, tables []string,
		catchUp func(context.Context) error, progress func(rows int64, chunks int)) (VerifyResult, error)
	// EnsureStandbys, when set, is asked at complete to give the cluster
	// the tenant ends on at least want streaming standbys, when its alias
	// wants some (registry.Alias.Standbys); an error retries the step. The
	// control plane wires its StandbyProvisioner here; nil leaves clusters
	// as they are.
	EnsureStandbys func(ctx context.Context, cluster string, want int) error
	// Now is the clock of the maintenance window and of hypercare; default
	// time.Now.
	Now func() time.Time
	// Hook, when set, is called at named points of a move ("prepared",
	// "replicated", "paused", "fenced", "applied", "before-flip", "flipped",
	// ...); an error it returns is the step's error. Tests use it to inject
	// failures and crashes.
	Hook func(ctx context.Context, point string) error
}

func (c *Config) fill() error {
	if c.Registry == nil {
		return errors.New("move: Config.Registry is required")
	}
	if len(c.Secret) == 0 {
		return errors.New("move: Config.Secret is required")
	}
	if c.BackupDir == "" {
		return errors.New("move: Config.BackupDir is required")
	}
	if c.Backup == nil || c.VerifyBackup == nil || c.Parity == nil || c.SchemaVersion == nil {
		return errors.New("move: Config.Backup, VerifyBackup, Parity and SchemaVersion are required")
	}
	if c.Credentials == nil {
		return errors.New("move: Config.Credentials is required")
	}
	if c.SequenceGap == 0 {
		c.SequenceGap = logrepl.DefaultSequenceGap
	}
	if c.LagBound == 0 {
		c.LagBound = 16 << 20
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 5 * time.Second
	}
	if c.RouterLive == 0 {
		c.RouterLive = 5 * time.Second
	}
	if c.RouterDead == 0 {
		c.RouterDead = 60 * time.Second
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 10 * time.Second
	}
	if c.Hypercare == 0 {
		c.Hypercare = 72 * time.Hour
	}
	if c.CountInPauseMaxRows == 0 {
		c.CountInPauseMaxRows = 250_000
	}
	if c.PurgeBatch == 0 {
		c.PurgeBatch = 5_000
	}
	if c.LinkCheckInterval == 0 {
		c.LinkCheckInterval = 30 * time.Second
	}
	if c.CopyWorkers <= 0 {
		c.CopyWorkers = logrepl.DefaultCopyWorkers
	}
	c.CopyWorkers = min(c.CopyWorkers, 6)
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

func (c *Config) hook(ctx context.Context, point string) error {
	if c.Hook == nil {
		return nil
	}
	return c.Hook(ctx, point)
}
