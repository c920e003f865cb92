package move

// Moves across a failover or switchover. PostgreSQL 15 keeps logical slots
// on the primary only: when a cluster of a move fails over or switches
// over, the link's slot stays behind on the former primary, and the
// subscription still connects to the address it was made with (the former
// primary's). A subscriber cluster's failover keeps the subscription
// (catalogs are replicated) but may lose applied changes the slot already
// counts as confirmed. So the move never trusts a link made on other
// primaries than its clusters' current ones:
//
//   - every step relying on the link (replicate, verify, ready, hypercare)
//     runs under watchLink, which checks the link before the step and again
//     when the step fails; ready and hypercare wake every
//     Config.LinkCheckInterval to be checked;
//   - before promotion a broken link restarts replication: both links and
//     the target's copy of the tenant are dropped, and replicate (then
//     verify) runs again on the current primaries;
//   - after a flip (hypercare) the link from the serving side is rebuilt
//     with a fresh copy into the other side (step relink); a cutback is
//     refused with ErrLinkNotInSync until it is in sync again;
//   - an invalidated slot (wal_status 'lost') fails the move with
//     ErrSlotInvalidated;
//   - a subscription whose publisher was only re-addressed (same primary,
//     slot in place) is pointed at the new address (ALTER SUBSCRIPTION ...
//     CONNECTION).

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"tenantry/logrepl"
	"tenantry/registry"
	"tenantry/workflow"
)

// stepRelink is the step that rebuilds the link of a move in hypercare.
const stepRelink = "relink"

// Primary is the primary member of an alias's cluster, as a link was made
// on it.
type Primary struct {
	Cluster string `json:"cluster"`
	Member  string `json:"member"`
	Addr    string `json:"addr"` // host:port
}

// Relink is one rebuild of a move's link.
type Relink struct {
	At     time.Time `json:"at"`
	Step   string    `json:"step"` // where the move was when it noticed
	Reason string    `json:"reason"`
	Action string    `json:"action"`
	Done   time.Time `json:"done,omitzero"` // the link in sync again
}

// primaries reads the primary of each alias's cluster from snap.
func primaries(snap *registry.Snapshot, aliases ...string) (map[string]Primary, error) {
	out := make(map[string]Primary, len(aliases))
	for _, a := range aliases {
		ep, err := snap.AliasEndpoint(a)
		if err != nil {
			return nil, err
		}
		c := snap.Clusters[ep.Cluster]
		p, _ := c.Primary()
		out[a] = Primary{Cluster: c.Name, Member: p.Name, Addr: net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port))}
	}
	return out, nil
}

// linkCheck is what checkLinkFailover read of a link; diagnose judges it.
type linkCheck struct {
	Link          Link
	Source        string             // the move's source alias (for messages)
	Made, Now     map[string]Primary // by alias: when the link was made; now
	SlotErr       error              // logrepl.Slot's error
	SlotWALStatus string
	SubAddr       string // where the subscription connects
	SubErr        error
}

// diagnose decides what a link's state means: nil when it is intact;
// ErrSlotInvalidated; ErrLinkLost with the reason (rebuild it); repoint
// when only the publisher's address changed (same primary, slot in place);
// any other error (a side could not be read) as it is.
func diagnose(c linkCheck) (repoint bool, err error) {
	l := c.Link
	if err := primaryChanged(c.Made, c.Now, c.Source); err != nil {
		return false, err
	}
	switch {
	case errors.Is(c.SlotErr, logrepl.ErrSlotLost) && c.SlotWALStatus == "lost":
		return false, fmt.Errorf("%w: slot %s on %s lost the WAL it needed (wal_status lost: the subscriber fell more than max_slot_wal_keep_size behind): %v",
			ErrSlotInvalidated, l.Slot, l.From, c.SlotErr)
	case errors.Is(c.SlotErr, logrepl.ErrSlotLost):
		return false, fmt.Errorf("%w: slot %s is not on the primary of %s (%s)", ErrLinkLost, l.Slot, l.From, c.Now[l.From].Addr)
	case c.SlotErr != nil:
		return false, c.SlotErr
	case errors.Is(c.SubErr, logrepl.ErrSubscriptionBroken):
		return false, fmt.Errorf("%w: subscription %s is not on the primary of %s", ErrLinkLost, l.Subscription, l.To)
	case c.SubErr != nil:
		return false, c.SubErr
	case c.SubAddr != c.Now[l.From].Addr:
		if _, ok := c.Made[l.From]; ok {
			return true, nil // same primary, new address: the slot is there
		}
		return false, fmt.Errorf("%w: subscription %s connects to %s, not to the primary of %s (%s)",
			ErrLinkLost, l.Subscription, c.SubAddr, l.From, c.Now[l.From].Addr)
	}
	return false, nil
}

// PrimaryChangedError is a lost link (it wraps ErrLinkLost) because the
// primary of one of the move's clusters is another member now than when
// the link was made: a failover or a switchover.
type PrimaryChangedError struct {
	Side    string // "source" or "target"
	Cluster string
	Was, Is Primary
	// How says what happened, from the cluster's event log when it is
	// there ("failed over at 2026-11-30T04:01:02Z").
	How string
}

func (e *PrimaryChangedError) Error() string {
	how := e.How
	if how == "" {
		how = "failed over or switched over"
	}
	return fmt.Sprintf("%v: %s cluster %s %s: primary %s (%s) is now %s (%s)",
		ErrLinkLost, e.Side, e.Cluster, how, e.Was.Member, e.Was.Addr, e.Is.Member, e.Is.Addr)
}

func (e *PrimaryChangedError) Unwrap() error { return ErrLinkLost }

// primaryChanged is a *PrimaryChangedError when the primary of an alias's
// cluster is another member now than when the link was made (made;
// aliases without a record are not judged). source names the move's
// source alias.
func primaryChanged(made, now map[string]Primary, source string) error {
	for _, a := range slices.Sorted(maps.Keys(made)) {
		was, is := made[a], now[a]
		if is.Member == was.Member {
			continue
		}
		side := "target"
		if a == source {
			side = "source"
		}
		return &PrimaryChangedError{Side: side, Cluster: is.Cluster, Was: was, Is: is}
	}
	return nil
}

// eventLog is the registry's event log (*registry.Store has it); when the
// move's Registry has it too, a lost link's reason says how and when the
// primary changed.
type eventLog interface {
	Events(ctx context.Context, f registry.EventFilter) ([]registry.Event, error)
}

// explain fills in how the primary of pc's cluster changed: the former
// primary's role in the registry tells a failover (fenced) from a
// switchover (standby) at once; the newest failover, switchover or follow
// event naming the new primary gives the time (it is written just after
// the registry repoints, so it may not be there yet).
func (m *Mover) explain(ctx context.Context, pc *PrimaryChangedError) {
	snap, err := m.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return
	}
	if c, ok := snap.Clusters[pc.Cluster]; ok {
		if was, ok := c.Member(pc.Was.Member); ok {
			switch was.Role {
			case registry.RoleFenced:
				pc.How = "failed over"
			case registry.RoleStandby:
				pc.How = "switched over"
			}
		}
	}
	log, ok := m.cfg.Registry.(eventLog)
	if !ok {
		return
	}
	evs, err := log.Events(ctx, registry.EventFilter{Subject: pc.Cluster, Kind: "cluster", Limit: 20, Newest: true})
	if err != nil {
		return
	}
	verbs := map[string]string{registry.EventFailover: "failed over", registry.EventSwitchover: "switched over",
		registry.EventFollowed: "changed primary under its HA manager"}
	for _, e := range evs {
		if v, ok := verbs[e.Kind]; ok && strings.Contains(e.Message, pc.Is.Member) {
			pc.How = v + " at " + e.At.UTC().Format(time.RFC3339)
			return
		}
	}
}

// primariesMoved is primaryChanged for the move's clusters as the
// registry names their primaries now.
func (m *Mover) primariesMoved(ctx context.Context, d *Data) error {
	snap, err := m.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return err
	}
	now, err := primaries(snap, d.Source, d.Target)
	if err != nil {
		return err
	}
	return primaryChanged(d.LinkPrimaries, now, d.Source)
}

// reachable pings the primaries of both aliases.
func (m *Mover) reachable(ctx context.Context, d *Data) error {
	_, sides, err := m.open(ctx, d.Source, d.Target)
	if err != nil {
		return err
	}
	defer closeSides(sides)
	for _, s := range sides {
		if err := s.pool.Ping(ctx); err != nil {
			return fmt.Errorf("primary of %s (%s): %w", s.alias, s.ep.Target(), err)
		}
	}
	return nil
}

// checkLinkFailover checks d.Link against its clusters' current primaries
// (see diagnose); with fix, a re-addressed publisher is repointed.
func (m *Mover) checkLinkFailover(ctx context.Context, d *Data, fix bool) error {
	l := d.Link
	snap, sides, err := m.open(ctx, l.From, l.To)
	if err != nil {
		return err
	}
	defer closeSides(sides)
	from, to := sides[0], sides[1]
	c := linkCheck{Link: *l, Source: d.Source, Made: d.LinkPrimaries}
	if c.Now, err = primaries(snap, l.From, l.To); err != nil {
		return err
	}
	var slot logrepl.SlotState
	slot, c.SlotErr = logrepl.Slot(ctx, from.pool, l.Slot)
	c.SlotWALStatus = slot.WALStatus
	c.SubAddr, c.SubErr = logrepl.SubscriptionPublisher(ctx, to.pool, l.Subscription)
	repoint, err := diagnose(c)
	if err != nil || !repoint {
		return err
	}
	if !fix {
		return fmt.Errorf("%w: subscription %s connects to %s, the primary of %s is at %s now", ErrLinkLost, l.Subscription, c.SubAddr, l.From, c.Now[l.From].Addr)
	}
	if err := logrepl.RepointSubscription(ctx, to.pool, l.Subscription, from.ep); err != nil {
		return err
	}
	d.LinkPrimaries = c.Now
	return nil
}

// watchLink runs step (one relying on the move's link) under the failover
// checks: before it, while it runs (watchdog) and again when it fails with
// an error it would retry.
func (m *Mover) watchLink(step workflow.Step) workflow.Step {
	return func(ctx context.Context, r *workflow.Run) (string, error) {
		if next, err, handled := m.guardLink(ctx, r, nil); handled {
			return next, err
		}
		var before Data
		if err := r.Decode(&before); err != nil {
			return "", workflow.Fail(err)
		}
		if r.Step == "replicate" {
			// replicate makes (and remakes) its link itself: only a change
			// of primary is the watchdog's business there.
			before.Link = nil
		}
		var next string
		err := m.underWatchdog(ctx, before, func(ctx context.Context) error {
			var err error
			next, err = step(ctx, r)
			return err
		})
		if !workflow.Retryable(err) || errors.Is(err, workflow.ErrLeaseLost) || ctx.Err() != nil {
			return next, err
		}
		if gnext, gerr, handled := m.guardLink(ctx, r, err); handled {
			return gnext, gerr
		}
		return next, err
	}
}

// underWatchdog runs fn with a context that the watchdog, checking d,
// cancels when it finds the link lost; fn's error is then the watchdog's
// finding rather than "context canceled".
func (m *Mover) underWatchdog(ctx context.Context, d Data, fn func(context.Context) error) error {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := m.watchdog(wctx, cancel, d)
	err := fn(wctx)
	stop()
	if cause := context.Cause(wctx); err != nil && cause != nil && ctx.Err() == nil {
		err = cause
	}
	return err
}

// watchdog checks, every LinkCheckInterval while a step runs, what the
// step cannot see while it waits on a link that is gone (an initial copy
// from a dead publisher waits for ever: its workers fail before they count
// an error): a primary of either cluster that changed since the link was
// made, and the slot and subscription of the link as d (read before the
// step) names it. It cancels the step with the fault; the step's caller
// acts on it. stop ends it.
func (m *Mover) watchdog(ctx context.Context, cancel context.CancelCauseFunc, d Data) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(m.cfg.LinkCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := m.linkGone(ctx, &d); err != nil {
				cancel(err)
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

// linkGone is the watchdog's check: ErrLinkLost or ErrSlotInvalidated, or
// nil (also when something could not be read: the step sees that itself).
func (m *Mover) linkGone(ctx context.Context, d *Data) error {
	if d.Link != nil {
		err := m.checkLinkFailover(ctx, d, false)
		if errors.Is(err, ErrLinkLost) || errors.Is(err, ErrSlotInvalidated) {
			return err
		}
		return nil
	}
	if err := m.primariesMoved(ctx, d); errors.Is(err, ErrLinkLost) {
		return err
	}
	return nil
}

// guardLink checks the move's link and, when it is broken, acts (handled
// true): a restart of replication before promotion, the relink step after
// it, the move failed for an invalidated slot. stepErr is the wrapped
// step's error, nil before it runs; when the link cannot be checked after
// a step failed (a cluster unreachable: a failover may be under way), the
// move waits and looks again instead of spending its retries.
func (m *Mover) guardLink(ctx context.Context, r *workflow.Run, stepErr error) (next string, err error, handled bool) {
	var d Data
	if err := r.Decode(&d); err != nil {
		return "", workflow.Fail(err), true
	}
	if d.Flip != nil {
		return "", nil, false // a flip in progress: resolveFlip's to settle
	}
	defer func() {
		if eerr := r.Encode(&d); eerr != nil {
			next, err, handled = "", workflow.Fail(eerr), true
		}
	}()
	if d.LinkPrimaries == nil && d.Link == nil {
		// Before the link is made: the primaries it will be made on.
		// (A registry that cannot be read fails the step itself.)
		if snap, err := m.cfg.Registry.Snapshot(ctx); err == nil {
			d.LinkPrimaries, _ = primaries(snap, d.Source, d.Target)
		}
		return "", nil, false
	}
	var fault error
	switch {
	case r.Step == "replicate" || d.Link == nil:
		// replicate makes (and remakes, discarding a partial copy) its
		// link itself; a link half made is no fault. Only a change of
		// primary is, or, after the step failed, a cluster out of reach.
		fault = m.primariesMoved(ctx, &d)
		if fault == nil && stepErr != nil {
			fault = m.reachable(ctx, &d)
		}
	default:
		fault = m.checkLinkFailover(ctx, &d, true)
	}
	switch {
	case fault == nil:
		if d.LinkDown != "" && r.Step == "ready" {
			m.linkBack(ctx, r, &d)
		}
		return "", nil, false
	case errors.Is(fault, ErrSlotInvalidated):
		d.LastError = fault.Error()
		_ = r.Info(ctx, "move failed: "+fault.Error(), nil)
		return "", workflow.Fail(fault), true
	case errors.Is(fault, ErrLinkLost):
		next, err := m.linkLost(ctx, r, &d, fault)
		return next, err, true
	case stepErr != nil:
		d.LastError = fmt.Sprintf("%v; the link cannot be checked (%v): waiting for the cluster or its failover", stepErr, fault)
		_ = r.Info(ctx, d.LastError, nil)
		return "", workflow.Wait(time.Now().Add(2 * time.Second)), true
	}
	return "", nil, false
}

// linkLost acts on a broken link: before promotion replication restarts,
// after it the move goes to step relink. Cutbacks and promotions asked for
// meanwhile are refused.
func (m *Mover) linkLost(ctx context.Context, r *workflow.Run, d *Data, fault error) (string, error) {
	var pc *PrimaryChangedError
	if errors.As(fault, &pc) {
		m.explain(ctx, pc)
	}
	if d.LinkDown == "" || len(d.Relinks) == 0 || !d.Relinks[len(d.Relinks)-1].Done.IsZero() {
		rl := Relink{At: m.cfg.Now(), Step: r.Step, Reason: fault.Error()}
		if len(d.Flips) == 0 {
			rl.Action = "replication restarted"
		} else {
			other := d.Target
			if d.On == d.Target {
				other = d.Source
			}
			rl.Action = fmt.Sprintf("link %s -> %s rebuilt with a fresh copy", d.On, other)
		}
		d.Relinks = append(d.Relinks, rl)
		d.LinkDown = fmt.Sprintf("%s (noticed at %s); %s", fault, rl.At.UTC().Format(time.RFC3339), rl.Action)
		_ = r.Info(ctx, d.LinkDown, rl)
	}
	d.LastError = d.LinkDown
	if len(d.Flips) > 0 {
		m.refuseFlips(ctx, r, d)
		d.Phase = PhaseHypercare
		return stepRelink, save(ctx, r, d)
	}
	return m.restartReplication(ctx, r, d)
}

// refuseFlips consumes the cutbacks and promotions sent before the link
// broke: each is recorded as refused, which Service.Command's wait reports.
func (m *Mover) refuseFlips(ctx context.Context, r *workflow.Run, d *Data) {
	for _, s := range r.Signals {
		if s.Name != SignalCutback && s.Name != SignalPromote {
			continue
		}
		r.Consume(s)
		d.FailedFlips++
		d.LastError = fmt.Sprintf("%s: %s refused: %s", ErrLinkNotInSync, s.Name, d.LinkDown)
		_ = r.Info(ctx, d.LastError, nil)
	}
}

// restartReplication, before promotion: drops both links (a subscription
// whose publisher is gone is detached from its slot first) and the
// target's copy of the tenant, then replicate and verify run again on the
// clusters' current primaries. Idempotent.
func (m *Mover) restartReplication(ctx context.Context, r *workflow.Run, d *Data) (string, error) {
	if err := m.dropLinks(ctx, r, d); err != nil {
		return "", err
	}
	if err := m.purgeCopy(ctx, r, d, d.Target); err != nil {
		return "", err
	}
	d.Link, d.LinkPrimaries = nil, nil
	d.Copy, d.CopySeconds, d.Verify, d.LagBytes = nil, 0, nil, 0
	d.Phase = PhaseReplicating
	if err := save(ctx, r, d); err != nil {
		return "", err
	}
	return "replicate", nil
}

// purgeCopy deletes the tenant's rows from alias, keeping its role (and
// its fence).
func (m *Mover) purgeCopy(ctx context.Context, r *workflow.Run, d *Data, alias string) error {
	_, sides, err := m.open(ctx, alias)
	if err != nil {
		return err
	}
	defer closeSides(sides)
	_, err = logrepl.PurgeTenant(ctx, sides[0].pool, d.Tenant, d.Tables, m.cfg.PurgeBatch, func(table string, deleted int64) {
		_ = r.Progress(ctx, map[string]any{"purge": table, "deleted": deleted, "alias": alias})
	})
	return err
}

// relink rebuilds, in hypercare, the link from the side serving the tenant
// to the other: both links and the other side's copy are dropped, then the
// link made again from the serving side's current primary with a fresh
// copy (logrepl.CopyLink: publication and slot there, a binary copy from
// the slot's snapshot, a subscription on the other side). Once that
// copy is done and the lag under the bound, the move is back in hypercare
// and cutback allowed. Idempotent: a re-run starts over.
func (m *Mover) relink(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		d.Phase = PhaseHypercare
		m.refuseFlips(ctx, r, d)
		from, to := d.On, d.Target
		if from == d.Target {
			to = d.Source
		}
		if err := m.dropLinks(ctx, r, d); err != nil {
			return "", err
		}
		if err := m.purgeCopy(ctx, r, d, to); err != nil {
			return "", err
		}
		snap, sides, err := m.open(ctx, from, to)
		if err != nil {
			return "", err
		}
		defer closeSides(sides)
		x, y := sides[0], sides[1]
		if d.LinkPrimaries, err = primaries(snap, d.Source, d.Target); err != nil {
			return "", err
		}
		l, err := linkFor(r.ID, d, from, to)
		if err != nil {
			return "", workflow.Fail(err)
		}
		d.Link = &l
		if err := save(ctx, r, d); err != nil {
			return "", err
		}
		if err := m.cfg.hook(ctx, "relinking"); err != nil {
			return "", err
		}
		// Another failover while the copy runs would leave it waiting for
		// ever: the watchdog cancels it (the primaries it was made on are
		// recorded) and the step starts over.
		err = m.underWatchdog(ctx, Data{Source: d.Source, Target: d.Target, LinkPrimaries: d.LinkPrimaries}, func(ctx context.Context) error {
			return m.relinkCopy(ctx, r, d, x, y, l)
		})
		if err != nil {
			return "", err
		}
		m.linkBack(ctx, r, d)
		return "hypercare", nil
	})
}

// relinkCopy makes link l from x to y with a fresh copy of the tenant
// (logrepl.CopyLink, as replicate does), then waits for its lag.
func (m *Mover) relinkCopy(ctx context.Context, r *workflow.Run, d *Data, x, y *side, l Link) error {
	_, err := logrepl.CopyLink(ctx, x.pool, y.pool, x.ep, l.Link, d.Tenant, d.Tables, logrepl.CopyOptions{
		Workers:    m.cfg.CopyWorkers,
		PurgeBatch: m.cfg.PurgeBatch,
		OnProgress: func(ts []logrepl.TableSync) { _ = r.Progress(ctx, map[string]any{"relink_copy": ts}) },
	})
	if err != nil {
		return err
	}
	return m.waitLag(ctx, r, d, x, l)
}

// linkBack records that the link is in sync again after a rebuild.
func (m *Mover) linkBack(ctx context.Context, r *workflow.Run, d *Data) {
	if n := len(d.Relinks); n > 0 && d.Relinks[n-1].Done.IsZero() {
		d.Relinks[n-1].Done = m.cfg.Now()
		_ = r.Info(ctx, fmt.Sprintf("replication link %s -> %s in sync again after: %s", d.Link.From, d.Link.To, d.Relinks[n-1].Reason), nil)
	}
	d.LinkDown, d.LastError = "", ""
}

// linkInSync refuses a flip asked for while the move's link is broken or
// being rebuilt (ErrLinkNotInSync with the reason); it checks the link
// against the clusters' primaries now, so a failover the move has not
// noticed yet refuses too.
func (m *Mover) linkInSync(ctx context.Context, in *Info) error {
	d := in.Data
	if in.Step == stepRelink || d.LinkDown != "" {
		return fmt.Errorf("%w: %s", ErrLinkNotInSync, d.LinkDown)
	}
	if d.Link == nil || d.Flip != nil {
		return nil
	}
	if err := m.checkLinkFailover(ctx, &d, false); err != nil {
		return fmt.Errorf("%w: %v", ErrLinkNotInSync, err)
	}
	return nil
}
