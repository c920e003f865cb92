package move

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/provision"
	"tenantry/registry"
	"tenantry/workflow"
)

// Phases a move reports (Data.Phase).
const (
	PhasePreparing   = "preparing"
	PhaseReplicating = "replicating"
	PhaseVerifying   = "verifying"
	PhaseReady       = "ready"
	PhaseFlipping    = "flipping"
	PhaseHypercare   = "hypercare"
	PhaseCompleting  = "completing"
	PhaseCancelling  = "cancelling"
	PhaseDone        = "done"
)

// Link is one direction of logical replication of the tenant's rows: a
// publication and slot on From, a subscription on To.
type Link struct {
	From         string `json:"from"` // alias
	To           string `json:"to"`   // alias
	Publication  string `json:"publication"`
	Slot         string `json:"slot"`
	Subscription string `json:"subscription"`
}

// FlipState is a promotion or cutback in progress, persisted at each phase
// so that a crashed control plane knows how to resume or roll back.
type FlipState struct {
	From       string    `json:"from"`
	To         string    `json:"to"`
	Kind       string    `json:"kind"` // promote or cutback
	Phase      string    `json:"phase"`
	StartEpoch int64     `json:"start_epoch"`
	Epoch      int64     `json:"epoch"` // the paused epoch
	PausedAt   time.Time `json:"paused_at"`
	FlipLSN    string    `json:"flip_lsn,omitempty"`
}

// FlipRecord is a finished promotion or cutback.
type FlipRecord struct {
	Kind      string         `json:"kind"`
	From      string         `json:"from"`
	To        string         `json:"to"`
	At        time.Time      `json:"at"`
	PauseMS   float64        `json:"pause_ms"`
	Epoch     int64          `json:"epoch"`
	Phases    map[string]int `json:"phase_ms,omitempty"` // ms spent in each part of the pause
	Sequences []SequenceBump `json:"sequences,omitempty"`
	// Counted says whether row counts were compared inside the pause; when
	// not, parity is verified right after the flip (AfterFlip).
	Counted   bool          `json:"counted_in_pause"`
	AfterFlip *VerifyResult `json:"verify_after_flip,omitempty"`
}

// VerifyResult is the outcome of the parity check.
type VerifyResult struct {
	Rows       int64   `json:"rows"`
	Chunks     int     `json:"chunks"`
	Seconds    float64 `json:"seconds"`
	RowsPerSec float64 `json:"rows_per_s"`
	OK         bool    `json:"ok"`
}

// Data is the persisted state of one move.
type Data struct {
	Tenant string   `json:"tenant"`
	Source string   `json:"source"` // alias the tenant was on when the move started
	Target string   `json:"target"`
	On     string   `json:"on"` // alias serving the tenant now
	Auto   bool     `json:"auto"`
	Force  bool     `json:"force,omitempty"`
	Tables []string `json:"tables,omitempty"`
	// SourceRows are the tenant's rows per table when the move started
	// (progress totals).
	SourceRows map[string]int64 `json:"source_rows,omitempty"`
	BackupDir  string           `json:"backup_dir,omitempty"`
	Phase      string           `json:"phase"`

	Link          *Link         `json:"link,omitempty"`
	Copy          []TableSync   `json:"copy,omitempty"`
	CopySeconds   float64       `json:"copy_seconds,omitempty"`
	LagBytes      int64         `json:"lag_bytes"`
	Verify        *VerifyResult `json:"verify,omitempty"`
	Flip          *FlipState    `json:"flip,omitempty"`
	Flips         []FlipRecord  `json:"flips,omitempty"`
	HypercareEnds time.Time     `json:"hypercare_ends,omitzero"`
	LastError     string        `json:"last_error,omitempty"`
	// VerifyPending: the last flip was not counted inside the pause and its
	// parity check is still to run (in hypercare).
	VerifyPending bool  `json:"verify_pending,omitempty"`
	FailedFlips   int   `json:"failed_flips,omitempty"`
	Purged        int64 `json:"purged_rows,omitempty"`
}

// Mover runs moves: it defines the move workflow and carries out its steps.
type Mover struct {
	cfg Config
}

// NewMover checks cfg and returns a Mover.
func NewMover(cfg Config) (*Mover, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	return &Mover{cfg: cfg}, nil
}

// Def is the move workflow definition to register with a workflow.Runner.
func (m *Mover) Def() *workflow.Def {
	return &workflow.Def{
		Kind:  Kind,
		Start: "prepare",
		Steps: map[string]workflow.Step{
			"prepare":   m.prepare,
			"replicate": m.replicate,
			"verify":    m.verify,
			"ready":     m.ready,
			"promote":   m.promote,
			"hypercare": m.hypercare,
			"cutback":   m.cutback,
			"complete":  m.complete,
			"cancel":    m.cancel,
			"abort":     m.abort,
		},
		Rollback:    "abort",
		MaxAttempts: 5,
		Backoff: func(attempt int) time.Duration {
			return min(time.Duration(attempt)*500*time.Millisecond, 5*time.Second)
		},
	}
}

// step wraps a step body with decoding and saving of Data.
func (m *Mover) step(ctx context.Context, r *workflow.Run, f func(*Data) (string, error)) (string, error) {
	var d Data
	if err := r.Decode(&d); err != nil {
		return "", workflow.Fail(err)
	}
	next, err := f(&d)
	if eerr := r.Encode(&d); eerr != nil {
		return "", workflow.Fail(eerr)
	}
	return next, err
}

// save persists d now (progress and phase changes inside a step).
func save(ctx context.Context, r *workflow.Run, d *Data) error {
	if err := r.Encode(d); err != nil {
		return err
	}
	return r.Save(ctx)
}

// side is an open connection pool to one alias and how to reach it.
type side struct {
	alias   string
	cluster string
	ep      Endpoint
	pool    *pgxpool.Pool
}

func (m *Mover) endpoint(snap *registry.Snapshot, alias string) (Endpoint, string, error) {
	ep, err := snap.AliasEndpoint(alias)
	if err != nil {
		return Endpoint{}, "", err
	}
	return Endpoint{Host: ep.Host, Port: ep.Port, Database: ep.Database, User: m.cfg.AdminUser,
		Password: m.cfg.AdminPassword, SSLMode: "disable"}, ep.Cluster, nil
}

// open connects to both aliases; close the returned sides with closeSides.
func (m *Mover) open(ctx context.Context, aliases ...string) (*registry.Snapshot, []*side, error) {
	snap, err := m.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []*side
	for _, a := range aliases {
		ep, cluster, err := m.endpoint(snap, a)
		if err != nil {
			closeSides(out)
			return nil, nil, err
		}
		p, err := pool(ctx, ep)
		if err != nil {
			closeSides(out)
			return nil, nil, err
		}
		out = append(out, &side{alias: a, cluster: cluster, ep: ep, pool: p})
	}
	return snap, out, nil
}

func closeSides(ss []*side) {
	for _, s := range ss {
		s.pool.Close()
	}
}

// linkFor names the replication link from -> to of move id: the forward
// names when it leaves the move's source, the reverse names otherwise.
func linkFor(id string, d *Data, from, to string) (Link, error) {
	n, err := NamesFor(id)
	if err != nil {
		return Link{}, err
	}
	if from == d.Source {
		return Link{From: from, To: to, Publication: n.Publication, Slot: n.Slot, Subscription: n.Subscription}, nil
	}
	return Link{From: from, To: to, Publication: n.RevPublication, Slot: n.RevSlot, Subscription: n.RevSubscription}, nil
}

// prepare validates the move again (the world may have changed since it was
// requested), provisions the tenant on the target and takes the backup.
func (m *Mover) prepare(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		d.Phase = PhasePreparing
		snap, sides, err := m.open(ctx, d.Source, d.Target)
		if err != nil {
			return "", err
		}
		defer closeSides(sides)
		src, dst := sides[0], sides[1]
		if err := m.checkMove(ctx, snap, d.Tenant, d.Source, d.Target, src, dst); err != nil {
			return "", workflow.Fail(err)
		}
		if len(d.Tables) == 0 {
			if d.Tables, err = TenantTables(ctx, src.pool); err != nil {
				return "", err
			}
		}
		if d.SourceRows, err = CountRows(ctx, src.pool, d.Tenant, d.Tables); err != nil {
			return "", err
		}
		n, err := CountRows(ctx, dst.pool, d.Tenant, d.Tables)
		if err != nil {
			return "", err
		}
		for t, c := range n {
			if c > 0 {
				return "", workflow.Fail(fmt.Errorf("%w: target %s already holds %d rows of tenant %s in %s",
					registry.ErrConflict, d.Target, c, d.Tenant, t))
			}
		}
		if err := provision.EnsureTenantRole(ctx, dst.pool, d.Tenant, provision.Password(m.cfg.Secret, d.Tenant)); err != nil {
			return "", fmt.Errorf("tenant role on target: %w", err)
		}
		d.BackupDir = filepath.Join(m.cfg.BackupDir, d.Tenant+"-"+r.ID)
		if err := m.cfg.VerifyBackup(d.BackupDir); err != nil {
			if err := m.cfg.Backup(ctx, src.pool, d.Tenant, d.BackupDir); err != nil {
				return "", fmt.Errorf("backup: %w", err)
			}
		}
		d.On = d.Source
		if err := m.cfg.hook(ctx, "prepared"); err != nil {
			return "", err
		}
		return "replicate", nil
	})
}

// checkMove refuses a move that cannot work: unknown tenant or alias, the
// tenant not on the source, same alias or same cluster (a role fence is
// cluster-wide), different schema versions.
func (m *Mover) checkMove(ctx context.Context, snap *registry.Snapshot, tenant, from, to string, src, dst *side) error {
	t, ok := snap.Tenants[tenant]
	if !ok {
		return fmt.Errorf("tenant %q: %w", tenant, registry.ErrNotFound)
	}
	if t.Alias != from {
		return fmt.Errorf("%w: tenant %s is on alias %s, not %s", registry.ErrConflict, tenant, t.Alias, from)
	}
	if from == to {
		return fmt.Errorf("%w: tenant %s is already on alias %s", registry.ErrInvalid, tenant, to)
	}
	if src.cluster == dst.cluster {
		return fmt.Errorf("%w: aliases %s and %s are on the same cluster %s; a move needs another cluster (the tenant's role, its fence, is cluster-wide)",
			registry.ErrInvalid, from, to, src.cluster)
	}
	sv, err := m.cfg.SchemaVersion(ctx, src.pool)
	if err != nil {
		return fmt.Errorf("source schema version: %w", err)
	}
	tv, err := m.cfg.SchemaVersion(ctx, dst.pool)
	if err != nil {
		return fmt.Errorf("target schema version: %w", err)
	}
	if sv != tv {
		return fmt.Errorf("%w: schema version differs: source %s is at %d, target %s at %d; migrate both first",
			registry.ErrConflict, from, sv, to, tv)
	}
	return nil
}

// replicate starts the forward link and waits for the initial copy, then for
// the lag to drop.
func (m *Mover) replicate(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		d.Phase = PhaseReplicating
		_, sides, err := m.open(ctx, d.Source, d.Target)
		if err != nil {
			return "", err
		}
		defer closeSides(sides)
		src, dst := sides[0], sides[1]
		l, err := linkFor(r.ID, d, d.Source, d.Target)
		if err != nil {
			return "", workflow.Fail(err)
		}
		d.Link = &l
		start := time.Now()
		if err := CreatePublication(ctx, src.pool, l.Publication, d.Tenant, d.Tables); err != nil {
			return "", err
		}
		if _, err := CreateSlot(ctx, src.pool, l.Slot); err != nil {
			return "", err
		}
		if err := CreateSubscription(ctx, dst.pool, l.Subscription, src.ep, l.Publication,
			SubOpts{CopyData: true, SlotName: l.Slot, Enabled: true}); err != nil {
			return "", err
		}
		if err := save(ctx, r, d); err != nil {
			return "", err
		}
		if err := m.cfg.hook(ctx, "replicating"); err != nil {
			return "", err
		}
		err = WaitSynced(ctx, dst.pool, l.Subscription, d.Tenant, func(ts []TableSync) {
			d.Copy = ts
			_ = r.Progress(ctx, map[string]any{"copy": ts})
		})
		if err != nil {
			return "", err
		}
		if d.CopySeconds == 0 {
			d.CopySeconds = time.Since(start).Seconds()
		}
		if d.Copy, err = CopyProgress(ctx, dst.pool, l.Subscription, d.Tenant); err != nil {
			return "", err
		}
		if err := Vacuum(ctx, dst.pool, d.Tables); err != nil {
			return "", err
		}
		if err := m.waitLag(ctx, r, d, src, l); err != nil {
			return "", err
		}
		if err := m.cfg.hook(ctx, "replicated"); err != nil {
			return "", err
		}
		return "verify", nil
	})
}

// waitLag waits until the link's lag is under the bound.
func (m *Mover) waitLag(ctx context.Context, r *workflow.Run, d *Data, src *side, l Link) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		lag, err := Lag(ctx, src.pool, l.Slot)
		if err != nil {
			return err
		}
		d.LagBytes = lag
		_ = r.Progress(ctx, map[string]any{"lag_bytes": lag})
		if lag <= m.cfg.LagBound {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replication lag %d bytes still above %d after 5 minutes", lag, m.cfg.LagBound)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ready waits for the operator's promote (or promotes at once with --auto).
func (m *Mover) ready(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		d.Phase = PhaseReady
		for _, s := range r.Signals {
			r.Consume(s)
			switch s.Name {
			case SignalPromote:
				return "promote", nil
			case SignalCancel:
				return "cancel", nil
			}
		}
		if d.Auto && d.FailedFlips < 3 {
			return "promote", nil
		}
		return "", workflow.Wait(time.Time{})
	})
}

// hypercare keeps both sides in sync while the operator decides: cutback
// (or promote again after a cutback), complete, or cancel.
func (m *Mover) hypercare(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		d.Phase = PhaseHypercare
		if d.HypercareEnds.IsZero() {
			d.HypercareEnds = m.cfg.Now().Add(m.cfg.Hypercare)
		}
		for _, s := range r.Signals {
			r.Consume(s)
			switch {
			case s.Name == SignalCutback && d.On == d.Target:
				return "cutback", nil
			case s.Name == SignalPromote && d.On == d.Source:
				return "promote", nil
			case s.Name == SignalComplete:
				return "complete", nil
			case s.Name == SignalCancel && d.On == d.Source:
				return "cancel", nil
			default:
				_ = r.Info(ctx, fmt.Sprintf("signal %s ignored: tenant is on %s", s.Name, d.On), nil)
			}
		}
		if d.VerifyPending {
			if err := m.verifyAfterFlip(ctx, r, d); err != nil {
				return "", err
			}
		}
		if !m.cfg.Now().Before(d.HypercareEnds) {
			return "complete", nil
		}
		if err := m.checkLink(ctx, d); err != nil {
			d.LastError = err.Error()
			_ = r.Info(ctx, "replication link unhealthy", map[string]string{"error": err.Error()})
		}
		return "", workflow.Wait(minTime(d.HypercareEnds, m.cfg.Now().Add(30*time.Second)))
	})
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// checkLink reports a broken or lost link during hypercare.
func (m *Mover) checkLink(ctx context.Context, d *Data) error {
	if d.Link == nil {
		return nil
	}
	_, sides, err := m.open(ctx, d.Link.From, d.Link.To)
	if err != nil {
		return err
	}
	defer closeSides(sides)
	if d.LagBytes, err = Lag(ctx, sides[0].pool, d.Link.Slot); err != nil {
		return err
	}
	st, err := Status(ctx, sides[1].pool, d.Link.Subscription)
	if err != nil {
		return err
	}
	if !st.Enabled {
		return fmt.Errorf("%w: subscription %s is disabled", ErrSubscriptionBroken, d.Link.Subscription)
	}
	return nil
}

func (m *Mover) promote(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		return m.flipStep(ctx, r, d, "promote", d.Source, d.Target)
	})
}

func (m *Mover) cutback(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		return m.flipStep(ctx, r, d, "cutback", d.Target, d.Source)
	})
}

// flipStep runs a flip and decides where the move goes next: hypercare
// when it flipped, back to where it waited when it was refused or rolled
// back.
func (m *Mover) flipStep(ctx context.Context, r *workflow.Run, d *Data, kind, from, to string) (string, error) {
	back := "ready"
	if len(d.Flips) > 0 {
		back = "hypercare"
	}
	if d.On == to && d.Flip == nil {
		return "hypercare", nil // already flipped (step re-run after a crash)
	}
	d.Phase = PhaseFlipping
	rec, err := m.flip(ctx, r, d, kind, from, to)
	if err == nil {
		d.Flips = append(d.Flips, *rec)
		d.VerifyPending = !rec.Counted
		d.Phase = PhaseHypercare
		d.LastError = ""
		d.HypercareEnds = m.cfg.Now().Add(m.cfg.Hypercare)
		_ = r.Info(ctx, fmt.Sprintf("%s: tenant %s now on %s; pause %.1f ms", kind, d.Tenant, to, rec.PauseMS), rec)
		return "hypercare", nil
	}
	if errors.Is(err, ErrPrecheck) || errors.Is(err, ErrAborted) {
		d.LastError = err.Error()
		d.FailedFlips++
		d.Phase = PhaseReady
		if back == "hypercare" {
			d.Phase = PhaseHypercare
		}
		_ = r.Info(ctx, kind+" refused or rolled back", map[string]string{"error": err.Error()})
		return back, nil
	}
	return "", err
}

// complete ends the move on the side the tenant is on: the replication
// objects are dropped, the other side's copy of the tenant is purged (the
// source's only after its backup verifies), and the fence on it is lifted.
func (m *Mover) complete(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		d.Phase = PhaseCompleting
		other := d.Source
		if d.On == d.Source {
			other = d.Target
		}
		if other == d.Source {
			if err := m.cfg.VerifyBackup(d.BackupDir); err != nil {
				return "", workflow.Fail(fmt.Errorf("backup of %s does not verify; refusing to purge the source: %w", d.Tenant, err))
			}
		}
		if err := m.dropLinks(ctx, r, d); err != nil {
			return "", err
		}
		if err := m.purge(ctx, r, d, other); err != nil {
			return "", err
		}
		d.Phase = PhaseDone
		return "", nil
	})
}

// cancel drops the replication objects and the target's copy; the tenant
// must be on the source.
func (m *Mover) cancel(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		if d.On == d.Target {
			return "hypercare", nil
		}
		d.Phase = PhaseCancelling
		if err := m.dropLinks(ctx, r, d); err != nil {
			return "", err
		}
		if err := m.purge(ctx, r, d, d.Target); err != nil {
			return "", err
		}
		d.Phase = PhaseDone
		return "", workflow.Cancel(errors.New("cancelled by operator"))
	})
}

// abort is the rollback of a failed move: when the tenant is (still) on the
// source, the replication objects and the target's copy are removed. When
// the tenant is on the target, nothing is removed: both copies stay for the
// operator.
func (m *Mover) abort(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		if d.Flip != nil {
			if err := m.resolveFlip(ctx, r, d); err != nil {
				return "", err
			}
		}
		if d.On != "" && d.On != d.Source {
			_ = r.Info(ctx, "move failed while the tenant is on the target: replication objects and both copies kept", nil)
			return "", nil
		}
		if err := m.dropLinks(ctx, r, d); err != nil {
			return "", err
		}
		if len(d.Tables) > 0 {
			if err := m.purge(ctx, r, d, d.Target); err != nil {
				return "", err
			}
		}
		return "", nil
	})
}

// dropLinks removes every replication object of the move on both sides.
// Idempotent.
func (m *Mover) dropLinks(ctx context.Context, r *workflow.Run, d *Data) error {
	_, sides, err := m.open(ctx, d.Source, d.Target)
	if err != nil {
		return err
	}
	defer closeSides(sides)
	src, dst := sides[0], sides[1]
	fwd, err := linkFor(r.ID, d, d.Source, d.Target)
	if err != nil {
		return err
	}
	rev, err := linkFor(r.ID, d, d.Target, d.Source)
	if err != nil {
		return err
	}
	for _, l := range []struct {
		link     Link
		from, to *side
	}{{fwd, src, dst}, {rev, dst, src}} {
		if err := DropSubscription(ctx, l.to.pool, l.link.Subscription); err != nil {
			return err
		}
		if err := DropSlot(ctx, l.from.pool, l.link.Slot); err != nil {
			return err
		}
		if err := DropPublication(ctx, l.from.pool, l.link.Publication); err != nil {
			return err
		}
	}
	d.Link = nil
	return nil
}

// purge deletes the tenant's rows from alias and drops its role there.
func (m *Mover) purge(ctx context.Context, r *workflow.Run, d *Data, alias string) error {
	_, sides, err := m.open(ctx, alias)
	if err != nil {
		return err
	}
	defer closeSides(sides)
	tables := d.Tables
	if len(tables) == 0 {
		return nil
	}
	n, err := PurgeTenant(ctx, sides[0].pool, d.Tenant, tables, m.cfg.PurgeBatch, func(table string, deleted int64) {
		_ = r.Progress(ctx, map[string]any{"purge": table, "deleted": deleted})
	})
	if err != nil {
		return err
	}
	for _, c := range n {
		d.Purged += c
	}
	// The fence is dropped with the role itself: the tenant has nothing left
	// on that cluster, and a router that never saw the flip still cannot
	// write there.
	return provision.DropTenantRole(ctx, sides[0].pool, d.Tenant)
}

// verify checks parity of the tenant's rows on both sides, re-checking
// differing chunks after the link catches up with the source.
func (m *Mover) verify(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		d.Phase = PhaseVerifying
		_, sides, err := m.open(ctx, d.Source, d.Target)
		if err != nil {
			return "", err
		}
		defer closeSides(sides)
		src, dst := sides[0], sides[1]
		l := d.Link
		if l == nil {
			return "", workflow.Fail(errors.New("verify: no replication link"))
		}
		catchUp := func(ctx context.Context) error {
			return m.catchUp(ctx, d, src, dst, *l, time.Minute)
		}
		res, err := m.cfg.Parity(ctx, src.pool, dst.pool, d.Tenant, d.Tables, catchUp, func(rows int64, chunks int) {
			_ = r.Progress(ctx, map[string]any{"verify_rows": rows, "verify_chunks": chunks})
			if chunks == 1 {
				_ = m.cfg.hook(ctx, "verifying") // crash tests stop here, mid-verify
			}
		})
		if errors.Is(err, ErrParity) {
			// A persistent difference: the move fails with the rows named.
			d.LastError = err.Error()
			return "", workflow.Fail(err)
		}
		if err != nil {
			return "", err
		}
		d.Verify = &res
		if err := m.cfg.hook(ctx, "verified"); err != nil {
			return "", err
		}
		return "ready", nil
	})
}

// ErrParity marks a persistent difference between the two copies; Parity
// implementations wrap their mismatch errors with it.
var ErrParity = errors.New("parity check failed")

// verifyAfterFlip checks parity between the side now serving the tenant
// and the other side, kept in sync by the link back, for a flip whose
// pause did not include row counts. A difference is recorded and reported
// (cut back to the side that was verified before the flip); it does not
// end the move.
func (m *Mover) verifyAfterFlip(ctx context.Context, r *workflow.Run, d *Data) error {
	l := d.Link
	if l == nil || len(d.Flips) == 0 {
		d.VerifyPending = false
		return nil
	}
	_, sides, err := m.open(ctx, l.From, l.To)
	if err != nil {
		return err
	}
	defer closeSides(sides)
	from, to := sides[0], sides[1]
	catchUp := func(ctx context.Context) error {
		return m.catchUp(ctx, d, from, to, *l, time.Minute)
	}
	if err := catchUp(ctx); err != nil {
		return err
	}
	res, err := m.cfg.Parity(ctx, from.pool, to.pool, d.Tenant, d.Tables, catchUp, func(int64, int) {})
	last := &d.Flips[len(d.Flips)-1]
	if errors.Is(err, ErrParity) {
		res.OK = false
		d.LastError = "parity after the flip failed (cut back to " + l.To + "): " + err.Error()
		_ = r.Info(ctx, d.LastError, nil)
	} else if err != nil {
		return err
	}
	last.AfterFlip = &res
	d.VerifyPending = false
	return save(ctx, r, d)
}
