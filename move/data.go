package move

import (
	"time"

	"tenantry/logrepl"
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
	From string `json:"from"` // alias
	To   string `json:"to"`   // alias
	logrepl.Link
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

// Flip phases, persisted in FlipState.Phase before each is entered.
const (
	flipPausing  = "pausing"  // placement may be paused, the role on From may refuse logins
	flipFenced   = "fenced"   // the tenant's role on From may be fenced
	flipFlipping = "flipping" // the placement may already point at To
	flipFlipped  = "flipped"  // placement points at To; the links are being swapped
)

// FlipRecord is a finished promotion or cutback.
type FlipRecord struct {
	Kind      string                 `json:"kind"`
	From      string                 `json:"from"`
	To        string                 `json:"to"`
	At        time.Time              `json:"at"`
	PauseMS   float64                `json:"pause_ms"`
	Epoch     int64                  `json:"epoch"`
	Phases    map[string]int         `json:"phase_ms,omitempty"` // ms spent in each part of the pause
	Sequences []logrepl.SequenceBump `json:"sequences,omitempty"`
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

	Link          *Link               `json:"link,omitempty"`
	Copy          []logrepl.TableSync `json:"copy,omitempty"`
	CopySeconds   float64             `json:"copy_seconds,omitempty"`
	LagBytes      int64               `json:"lag_bytes"`
	Verify        *VerifyResult       `json:"verify,omitempty"`
	Flip          *FlipState          `json:"flip,omitempty"`
	Flips         []FlipRecord        `json:"flips,omitempty"`
	HypercareEnds time.Time           `json:"hypercare_ends,omitzero"`
	LastError     string              `json:"last_error,omitempty"`
	// VerifyPending: the last flip was not counted inside the pause and its
	// parity check is still to run (in hypercare).
	VerifyPending bool  `json:"verify_pending,omitempty"`
	FailedFlips   int   `json:"failed_flips,omitempty"`
	Purged        int64 `json:"purged_rows,omitempty"`

	// LinkPrimaries are the primaries of both aliases' clusters (by alias)
	// the link was made on; another primary now means a failover or
	// switchover broke it (failover.go).
	LinkPrimaries map[string]Primary `json:"link_primaries,omitempty"`
	// LinkDown, while set, says why the link is not in sync: it is being
	// rebuilt after a failover; cutback is refused meanwhile.
	LinkDown string `json:"link_down,omitempty"`
	// Relinks are the link's rebuilds after failovers, switchovers or lost
	// slots, oldest first.
	Relinks []Relink `json:"relinks,omitempty"`
}
