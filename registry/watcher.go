package registry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// WatcherOptions configure a Watcher. Zero values mean the documented defaults.
type WatcherOptions struct {
	// PollInterval is how often the registry version is polled as a fallback
	// to notifications; default 2s.
	PollInterval time.Duration
	// Logger receives connection errors (rate-limited); nil discards.
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// reconnects of the LISTEN connection; defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// ErrorLogInterval is the least time between two logged errors of the
	// same loop; default 30s.
	ErrorLogInterval time.Duration
}

// Watcher keeps an immutable Snapshot of the registry current: it LISTENs
// on NotifyChannel and reloads when a newer version is announced, and polls
// the version as a fallback. When the control database is unreachable it
// keeps serving the last snapshot and reconnects with backoff.
type Watcher struct {
	dsn  string
	opts WatcherOptions
	log  *slog.Logger

	cur       atomic.Pointer[Snapshot]
	pool      *pgxpool.Pool
	refreshMu sync.Mutex

	mu      sync.Mutex
	subs    map[chan *Snapshot]struct{}
	changed chan struct{} // closed and replaced on every swap

	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewWatcher returns a watcher of the control database at dsn; call Start.
func NewWatcher(dsn string, opts WatcherOptions) *Watcher {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Second, opts.MinBackoff)
	}
	if opts.ErrorLogInterval <= 0 {
		opts.ErrorLogInterval = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Watcher{
		dsn:     dsn,
		opts:    opts,
		log:     log.With("subsystem", "registry-watcher"),
		subs:    map[chan *Snapshot]struct{}{},
		changed: make(chan struct{}),
		kick:    make(chan struct{}, 1),
	}
}

// Start loads the first snapshot (failing if it cannot within ctx) and then
// keeps it current in the background until Stop.
func (w *Watcher) Start(ctx context.Context) error {
	cfg, err := pgxpool.ParseConfig(w.dsn)
	if err != nil {
		return fmt.Errorf("start registry watcher: %w", err)
	}
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("start registry watcher: %w", err)
	}
	w.pool = pool
	if err := w.Refresh(ctx); err != nil {
		pool.Close()
		return fmt.Errorf("start registry watcher: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(2)
	go func() { defer w.wg.Done(); w.listen(runCtx) }()
	go func() { defer w.wg.Done(); w.poll(runCtx) }()
	return nil
}

// Stop ends the background work and closes the connections. Current keeps
// returning the last snapshot.
func (w *Watcher) Stop() {
	if w.cancel != nil {
		w.cancel()
		w.wg.Wait()
		w.cancel = nil
	}
	if w.pool != nil {
		w.pool.Close()
	}
}

// Current returns the latest snapshot; never nil after Start succeeded.
func (w *Watcher) Current() *Snapshot { return w.cur.Load() }

// Refresh reads the registry version and, if it is newer than the current
// snapshot's, loads and publishes a new snapshot. It is one poll step.
func (w *Watcher) Refresh(ctx context.Context) error {
	w.refreshMu.Lock()
	defer w.refreshMu.Unlock()
	cur := w.cur.Load()
	if cur != nil {
		var v int64
		if err := w.pool.QueryRow(ctx, "SELECT version FROM registry_version").Scan(&v); err != nil {
			return fmt.Errorf("poll registry version: %w", err)
		}
		if v <= cur.Version {
			return nil
		}
	}
	snap, err := readSnapshot(ctx, w.pool)
	if err != nil {
		return err
	}
	if cur != nil && snap.Version <= cur.Version {
		return nil
	}
	w.publish(snap)
	return nil
}

// publish hands snap to subscribers before making it current, so that a
// caller who saw a version in Current finds it in its subscription too.
func (w *Watcher) publish(snap *Snapshot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.subs {
		offerLatest(ch, snap)
	}
	w.cur.Store(snap)
	close(w.changed)
	w.changed = make(chan struct{})
}

// offerLatest leaves snap as the only value in ch (capacity 1), dropping a
// stale unread one. Only publish and Subscribe send, under w.mu.
func offerLatest(ch chan *Snapshot, snap *Snapshot) {
	select {
	case <-ch:
	default:
	}
	ch <- snap
}

// Subscribe returns a channel that always holds the latest snapshot not yet
// received (capacity 1, stale values are dropped) and a func that ends the
// subscription. The current snapshot, if any, is delivered at once.
func (w *Watcher) Subscribe() (<-chan *Snapshot, func()) {
	ch := make(chan *Snapshot, 1)
	w.mu.Lock()
	w.subs[ch] = struct{}{}
	if s := w.cur.Load(); s != nil {
		offerLatest(ch, s)
	}
	w.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			w.mu.Lock()
			delete(w.subs, ch)
			w.mu.Unlock()
		})
	}
}

// WaitVersion waits until the current snapshot's version is at least v.
func (w *Watcher) WaitVersion(ctx context.Context, v int64) (*Snapshot, error) {
	for {
		w.mu.Lock()
		changed := w.changed
		w.mu.Unlock()
		if s := w.cur.Load(); s != nil && s.Version >= v {
			return s, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for registry version %d: %w", v, ctx.Err())
		}
	}
}

// poll refreshes on every notification kick and every PollInterval.
func (w *Watcher) poll(ctx context.Context) {
	t := time.NewTicker(w.opts.PollInterval)
	defer t.Stop()
	logged := errorLimiter{every: w.opts.ErrorLogInterval}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-t.C:
		}
		if err := w.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			if ok, suppressed := logged.allow(time.Now()); ok {
				w.log.Warn("registry refresh failed; serving last snapshot", "err", err,
					"version", w.Current().Version, "suppressed", suppressed)
			}
		} else if logged.failing {
			w.log.Info("registry refresh recovered", "version", w.Current().Version)
			logged.reset()
		}
	}
}

func (w *Watcher) signal() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// listen holds a LISTEN connection, reconnecting with backoff, and kicks the
// poll loop when a newer version is announced or after a reconnect (when
// notifications may have been missed).
func (w *Watcher) listen(ctx context.Context) {
	backoff := w.opts.MinBackoff
	logged := errorLimiter{every: w.opts.ErrorLogInterval}
	for ctx.Err() == nil {
		err := w.listenOnce(ctx, func() {
			backoff = w.opts.MinBackoff
			if logged.failing {
				w.log.Info("registry listen connection restored")
				logged.reset()
			}
		})
		if ctx.Err() != nil {
			return
		}
		if ok, suppressed := logged.allow(time.Now()); ok {
			w.log.Warn("registry listen connection lost; retrying", "err", err, "backoff", backoff, "suppressed", suppressed)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, w.opts.MaxBackoff)
	}
}

// listenOnce connects, LISTENs on NotifyChannel, calls connected, kicks a
// refresh, and then kicks one for every notification of a version newer
// than the current snapshot, until the connection fails or ctx ends.
func (w *Watcher) listenOnce(ctx context.Context, connected func()) error {
	conn, err := pgx.Connect(ctx, w.dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if connected != nil {
		connected()
	}
	w.signal()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		v, err := strconv.ParseInt(n.Payload, 10, 64)
		if err != nil || v > w.Current().Version {
			w.signal()
		}
	}
}

// errorLimiter rate-limits error logs of one loop.
type errorLimiter struct {
	every      time.Duration
	last       time.Time
	failing    bool
	suppressed int
}

// allow records a failure and reports whether to log it, with the number
// of failures suppressed since the last logged one.
func (l *errorLimiter) allow(now time.Time) (bool, int) {
	l.failing = true
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

func (l *errorLimiter) reset() {
	*l = errorLimiter{every: l.every}
}
