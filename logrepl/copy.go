package logrepl

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/registry"
)

// DefaultCopyWorkers is how many tables CopyLink copies at once by default.
const DefaultCopyWorkers = 4

// DefaultChunkPages is the size (8 KiB pages) from which CopyLink splits a
// table between its workers by default: 1 GiB. A piece is read by key
// range, an index scan, where a whole table is one sequential scan: on a
// quiet 2-core machine `tenantry bench move` (three tables of 350,000
// rows, 25-40 MB) copied in 1.09-1.23 of the binary pipe's time with the
// tables split from 8 MiB and in 1.02-1.03 unsplit; splitting pays where
// one table is most of the tenant and would leave workers idle.
const DefaultChunkPages = 1 << 17

// DefaultDeferIndexPages is the size (8 KiB pages, all tenants, on the
// source) from which CopyLink loads a whole table that is empty on the
// target before building its indexes, by default: 1 MiB. Below it keeping
// the indexes costs less than dropping and building them.
const DefaultDeferIndexPages = 128

// copyBuffer batches the rows COPY TO hands over one CopyData message each
// into messages of this size for COPY FROM: pgconn sends one message per
// read, so an unbuffered pipe pays a write to the target per row. It is
// under pgconn's 64 KiB read buffer, so that each write is one read.
const copyBuffer = 60 << 10

// progressEvery is how often CopyLink reports progress while copying.
const progressEvery = 200 * time.Millisecond

// CopyOptions are the options of CopyLink; zero values mean the defaults.
type CopyOptions struct {
	// Workers is how many tables are copied at once, each by a pair of
	// connections (one per side); default DefaultCopyWorkers. The pools
	// must allow that many connections.
	Workers int
	// ChunkPages: a table of at least this many pages (all tenants) whose
	// primary key is (tenant_id, an integer column, ...) is copied in
	// Workers ranges of that column at once, so that one large table keeps
	// every worker busy; default DefaultChunkPages.
	ChunkPages int
	// DeferIndexPages: a table copied whole, of at least this many pages
	// (all tenants, on the source), that has no rows at all on the target
	// is loaded before its indexes are built, in the transaction of its
	// load (see deferIndexes); default DefaultDeferIndexPages, negative:
	// never.
	DeferIndexPages int
	// PurgeBatch is the batch of PurgeTenant when the rows of an
	// interrupted copy are removed from the target; default 5,000.
	PurgeBatch int
	// OnProgress (if not nil) gets every table's progress while copying,
	// at most every 200 ms and once at the end, from one goroutine; it
	// must not block for long.
	OnProgress func([]TableSync)
	// AfterTable (if not nil) is called after each table's copy is
	// committed on the target; an error stops the copy (the next CopyLink
	// starts it again).
	AfterTable func(ctx context.Context, table string) error
}

// CopyResult is what CopyLink did.
type CopyResult struct {
	// Copied is false when the link existed already (its subscription is
	// there): nothing was copied.
	Copied bool
	// Tables are the rows and bytes copied per table.
	Tables []TableSync
	// ConsistentPoint is the slot's start: the copy holds every change of
	// the tenant committed before it, the subscription applies the ones
	// committed after it.
	ConsistentPoint LSN
}

// CopyLink makes link l from src to dst for the tenant's rows of tables
// (parents first, as tenanttable.List gives them) with a binary copy of the
// rows instead of the subscription's initial table sync:
//
//  1. publication l.Publication on src (CreatePublication), before the slot,
//     so that the slot decodes every change after its start with it;
//  2. slot l.Slot created over a replication connection to srcEp with its
//     snapshot exported (CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')):
//     the snapshot sees exactly the transactions committed before the slot's
//     consistent point, and the slot streams exactly those committed after;
//  3. per table — or per key range of a large table (CopyOptions.ChunkPages)
//     — in parallel (opts.Workers), COPY (SELECT ... WHERE tenant_id = ...)
//     TO STDOUT (FORMAT binary) in a REPEATABLE READ transaction on that
//     snapshot, piped into COPY ... FROM STDIN (FORMAT binary) on dst, one
//     transaction per piece, with session_replication_role = replica as the
//     subscription's own workers load (foreign keys and triggers are the
//     source's business; tables load in any order); a large table copied
//     whole into a target table without rows gets the indexes nothing else
//     depends on built after its load, in the same transaction, as
//     pg_restore does (CopyOptions.DeferIndexPages);
//  4. subscription l.Subscription on dst attached to the slot, with
//     copy_data = false, created only once every table is committed: an
//     UPDATE or DELETE applied before its row was copied would be lost.
//
// So every row committed on src is in dst exactly once: from the snapshot
// or from the slot. An existing subscription means an earlier call got
// through step 4; CopyLink then returns Copied false and does nothing else.
// Otherwise whatever an interrupted earlier call left is discarded first:
// the slot (its exported snapshot died with its connection) and the
// tenant's rows on dst (which the move's prepare checked were none). So
// CopyLink is idempotent and a crash anywhere restarts the copy cleanly.
//
// src and dst are admin pools (superuser: replication role settings and
// row-level security bypass, as the subscription's workers have).
func CopyLink(ctx context.Context, src, dst *pgxpool.Pool, srcEp Endpoint, l Link, tenant string, tables []string, opts CopyOptions) (CopyResult, error) {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return CopyResult{}, err
	}
	ts, err := parseTables(tables)
	if err != nil {
		return CopyResult{}, err
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultCopyWorkers
	}
	if opts.PurgeBatch <= 0 {
		opts.PurgeBatch = 5000
	}
	if opts.ChunkPages <= 0 {
		opts.ChunkPages = DefaultChunkPages
	}
	if opts.DeferIndexPages == 0 {
		opts.DeferIndexPages = DefaultDeferIndexPages
	}
	if ok, err := subscriptionExists(ctx, dst, l.Subscription); err != nil || ok {
		return CopyResult{}, wrapErr("copy link", err)
	}
	if err := validIdent("slot", l.Slot); err != nil {
		return CopyResult{}, err
	}
	// The replication connection and the target's purge do not wait for
	// the source's catalog work: the copy's fixed cost is one of them.
	dialed := make(chan replConn, 1)
	go func() { dialed <- dialReplication(ctx, srcEp) }()
	purged := make(chan error, 1)
	go func() {
		_, err := PurgeTenant(ctx, dst, tenant, tables, opts.PurgeBatch, nil)
		purged <- wrapErr("remove an interrupted copy", err)
	}()
	c := &tableCopy{src: src, dst: dst, tenant: tenant, tables: ts, opts: opts}
	err = DropSlot(ctx, src, l.Slot)
	if err == nil {
		err = CreatePublication(ctx, src, l.Publication, tenant, tables)
	}
	if err == nil {
		err = c.plan(ctx)
	}
	rc := <-dialed
	if err = errors.Join(err, <-purged, rc.err); err != nil {
		if rc.conn != nil {
			rc.conn.Close(context.Background())
		}
		return CopyResult{}, err
	}
	slot, err := createExportedSlot(ctx, rc.conn, l.Slot)
	if err != nil {
		return CopyResult{}, err
	}
	defer slot.close()
	if err := c.run(ctx, slot); err != nil {
		return CopyResult{}, err
	}
	if err := waitSlotInactive(ctx, src, l.Slot); err != nil {
		return CopyResult{}, err
	}
	if err := CreateSubscription(ctx, dst, l.Subscription, srcEp, l.Publication,
		SubOpts{SlotName: l.Slot, Enabled: true}); err != nil {
		return CopyResult{}, err
	}
	return CopyResult{Copied: true, Tables: c.progress(), ConsistentPoint: slot.lsn}, nil
}

// exportedSlot is a logical slot just created over a replication
// connection, whose snapshot stays importable until the connection runs
// another command or closes.
type exportedSlot struct {
	conn     *pgconn.PgConn
	lsn      LSN
	snapshot string
}

var snapshotRe = regexp.MustCompile(`^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$`)

// replConn is a replication connection being opened.
type replConn struct {
	conn *pgconn.PgConn
	err  error
}

// dialReplication opens a replication connection (replication=database) to
// ep's server.
func dialReplication(ctx context.Context, ep Endpoint) replConn {
	cc, err := ep.ConnConfig()
	if err != nil {
		return replConn{err: err}
	}
	cfg := cc.Config.Copy()
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "tenantry-move"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return replConn{err: fmt.Errorf("replication connection to %s: %w", ep.Target(), err)}
	}
	return replConn{conn: conn}
}

// createExportedSlot creates logical slot name (pgoutput, a valid name)
// over replication connection conn and keeps the connection, and so the
// exported snapshot, open; on error conn is closed.
func createExportedSlot(ctx context.Context, conn *pgconn.PgConn, name string) (*exportedSlot, error) {
	res, err := conn.Exec(ctx, "CREATE_REPLICATION_SLOT "+pgx.Identifier{name}.Sanitize()+
		" LOGICAL pgoutput (SNAPSHOT 'export')").ReadAll()
	if err == nil && (len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 3) {
		err = errors.New("unexpected reply")
	}
	if err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("create slot %s: %w", name, err)
	}
	row := res[0].Rows[0]
	s := &exportedSlot{conn: conn, snapshot: string(row[2])}
	if s.lsn, err = ParseLSN(string(row[1])); err != nil || !snapshotRe.MatchString(s.snapshot) {
		s.close()
		return nil, fmt.Errorf("create slot %s: unexpected consistent point %q or snapshot %q", name, row[1], row[2])
	}
	return s, nil
}

// close ends the replication connection; the snapshot is no longer
// importable, transactions that imported it keep it. Idempotent.
func (s *exportedSlot) close() {
	if s.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.conn.Close(ctx)
		s.conn = nil
	}
}

// waitSlotInactive waits until no walsender holds slot name (the one that
// created it is exiting), so that the subscription's first connection does
// not find it busy and wait out wal_retrieve_retry_interval.
func waitSlotInactive(ctx context.Context, src Querier, name string) error {
	for {
		var active bool
		if err := src.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&active); err != nil {
			return fmt.Errorf("read slot %s: %w", name, err)
		}
		if !active {
			return nil
		}
		if err := sleep(ctx, pollEvery/10); err != nil {
			return fmt.Errorf("wait for slot %s to be released: %w", name, err)
		}
	}
}

// tableCopy is one run of step 3 of CopyLink.
type tableCopy struct {
	src, dst *pgxpool.Pool
	tenant   string
	tables   []table
	opts     CopyOptions
	state    []tableState
	pieces   []piece
}

// tableState is one table's progress, written by its workers.
type tableState struct {
	state atomic.Value // string: SyncInit, SyncCopying, SyncReady
	rows  atomic.Int64 // CopyData messages so far (one per row), rows loaded once a piece commits
	bytes atomic.Int64
	// built counts the indexes built after a load (deferIndexes).
	built atomic.Int32
	// left is the pieces not committed yet.
	left atomic.Int32
}

// piece is a part of one table copied in one statement and committed on
// its own: the rows whose key column (the primary key's column after
// tenant_id) is in [from, to), an open end where a bound is nil; or the
// whole table when key is empty.
type piece struct {
	table    int
	cols     string // the columns COPY takes, quoted
	key      string // quoted column, or ""
	from, to *int64
	pages    int64 // the table's size (all tenants), for the order of whole tables
}

// where is the piece's condition after the tenant's.
func (p piece) where() string {
	var w string
	if p.from != nil {
		w += " AND " + p.key + " >= " + strconv.FormatInt(*p.from, 10)
	}
	if p.to != nil {
		w += " AND " + p.key + " < " + strconv.FormatInt(*p.to, 10)
	}
	return w
}

// plan splits every table into pieces: tables of at least ChunkPages pages
// whose primary key is (tenant_id, an integer column, ...) into Workers
// ranges of that column between the tenant's least and greatest values —
// the first and last open-ended, so the pieces cover every row whatever
// is written meanwhile — and the others whole. Split tables come first,
// their ranges taken in turn (the first of each table, then the second,
// ...), so that the pieces running at once load different tables rather
// than contend for one table's extension lock and index pages; then the
// whole tables, largest first, so that the copy's longest pieces start at
// once and the small tables fill the workers' ends (in the order given,
// three tables of 350,000 rows waited for seven small ones).
func (c *tableCopy) plan(ctx context.Context) error {
	rels, err := c.relations(ctx)
	if err != nil {
		return err
	}
	var split [][]piece
	var whole []piece
	for i, t := range c.tables {
		r := rels[i]
		n := c.opts.Workers
		if r.key == nil || r.pages < int64(c.opts.ChunkPages) || n < 2 {
			whole = append(whole, piece{table: i, cols: r.cols, pages: r.pages})
			continue
		}
		k := pgx.Identifier{*r.key}.Sanitize()
		var lo, hi *int64
		if err := c.src.QueryRow(ctx, "SELECT min("+k+"), max("+k+") FROM "+t.ident()+" WHERE tenant_id = $1",
			c.tenant).Scan(&lo, &hi); err != nil {
			return fmt.Errorf("plan the copy of %s: %w", t, err)
		}
		if lo == nil || *hi-*lo < int64(n) { // < 0: an overflow
			whole = append(whole, piece{table: i, cols: r.cols, pages: r.pages})
			continue
		}
		var from *int64
		ranges := make([]piece, n)
		for j := range n {
			ranges[j] = piece{table: i, cols: r.cols, key: k, from: from}
			if j < n-1 {
				b := *lo + (*hi-*lo)/int64(n)*int64(j+1)
				ranges[j].to = &b
			}
			from = ranges[j].to
		}
		split = append(split, ranges)
	}
	c.pieces = c.pieces[:0]
	for j := range c.opts.Workers {
		for _, ranges := range split {
			c.pieces = append(c.pieces, ranges[j])
		}
	}
	slices.SortStableFunc(whole, func(a, b piece) int { return cmp.Compare(b.pages, a.pages) })
	c.pieces = append(c.pieces, whole...)
	c.state = make([]tableState, len(c.tables))
	for i := range c.state {
		c.state[i].state.Store(SyncInit)
	}
	for _, p := range c.pieces {
		c.state[p.table].left.Add(1)
	}
	return nil
}

// run copies every piece with opts.Workers workers, each in its own
// REPEATABLE READ transaction on the slot's snapshot; the replication
// connection is closed as soon as every worker has imported it.
func (c *tableCopy) run(ctx context.Context, slot *exportedSlot) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	workers := min(c.opts.Workers, len(c.pieces))
	next := make(chan piece, len(c.pieces))
	for _, p := range c.pieces {
		next <- p
	}
	close(next)
	var imported, done sync.WaitGroup
	imported.Add(workers)
	for range workers {
		done.Go(func() {
			if err := c.worker(ctx, slot.snapshot, &imported, next); err != nil {
				cancel(err)
			}
		})
	}
	imported.Wait()
	slot.close()
	stop := make(chan struct{})
	var reporter sync.WaitGroup
	reporter.Go(func() { c.report(stop) })
	done.Wait()
	close(stop)
	reporter.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// report calls OnProgress every progressEvery until stop, and once at the
// end.
func (c *tableCopy) report(stop <-chan struct{}) {
	if c.opts.OnProgress == nil {
		return
	}
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			c.opts.OnProgress(c.progress())
			return
		case <-t.C:
			c.opts.OnProgress(c.progress())
		}
	}
}

// progress is every table's state now.
func (c *tableCopy) progress() []TableSync {
	out := make([]TableSync, len(c.tables))
	for i, t := range c.tables {
		s := &c.state[i]
		out[i] = TableSync{Table: t.String(), State: s.state.Load().(string), Rows: s.rows.Load(), Bytes: s.bytes.Load(),
			IndexesBuilt: int(s.built.Load())}
	}
	return out
}

// worker imports the snapshot on a source connection, marks imported
// done, then copies pieces from next until it is empty.
func (c *tableCopy) worker(ctx context.Context, snapshot string, imported *sync.WaitGroup, next <-chan piece) error {
	once := sync.OnceFunc(imported.Done)
	defer once()
	sc, err := c.src.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	defer sc.Release()
	tx, err := sc.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("copy: begin: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read-only; ends the snapshot
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+snapshot+"'"); err != nil {
		return fmt.Errorf("copy: import snapshot: %w", err)
	}
	once()
	dc, err := c.dst.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	defer dc.Release()
	for p := range next {
		if err := c.copyPiece(ctx, tx.Conn(), dc.Conn(), p); err != nil {
			return err
		}
		if c.state[p.table].left.Add(-1) > 0 {
			continue
		}
		c.state[p.table].state.Store(SyncReady)
		if c.opts.AfterTable != nil {
			if err := c.opts.AfterTable(ctx, c.tables[p.table].String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyPiece pipes piece p from the snapshot into dst in one transaction.
func (c *tableCopy) copyPiece(ctx context.Context, sc, dc *pgx.Conn, p piece) error {
	t, s := c.tables[p.table], &c.state[p.table]
	lit, err := quoteLiteral(c.tenant)
	if err != nil {
		return err
	}
	s.state.CompareAndSwap(SyncInit, SyncCopying)
	tx, err := dc.Begin(ctx)
	if err != nil {
		return fmt.Errorf("copy %s: %w", t, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after commit
	if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		return fmt.Errorf("copy %s: %w", t, err)
	}
	var build []string
	if p.key == "" && c.opts.DeferIndexPages > 0 && p.pages >= int64(c.opts.DeferIndexPages) {
		if build, err = deferIndexes(ctx, tx, t); err != nil {
			return fmt.Errorf("copy %s: %w", t, err)
		}
	}
	out := "COPY (SELECT " + p.cols + " FROM " + t.ident() + " WHERE tenant_id = " + lit + p.where() + ") TO STDOUT (FORMAT binary)"
	in := "COPY " + t.ident() + " (" + p.cols + ") FROM STDIN (FORMAT binary)"
	cw := &countingWriter{s: s}
	n, err := pipe(ctx, sc.PgConn(), dc.PgConn(), out, in, cw)
	if err != nil {
		return fmt.Errorf("copy %s: %w", t, err)
	}
	for _, stmt := range build {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("copy %s: build its indexes after the load: %w", t, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("copy %s: commit: %w", t, err)
	}
	s.rows.Add(n - cw.msgs) // the trailer is no row
	s.built.Add(int32(len(build)))
	return nil
}

// deferIndexes drops, in transaction tx on the target, the indexes of
// table t that a load is better without, and returns the statements that
// build them again, for the same transaction after the load: so the table
// is never seen, nor left by a crash, without them. Building an index from
// a sort of the loaded rows costs less than inserting every row into it:
// into tables shaped as `tenantry bench move`'s three of 350,000 rows, a
// binary COPY pipe loaded so in 0.67 of the time it took with the indexes.
//
// Only a table with no rows at all (no tenant's) is loaded so, under an
// ACCESS EXCLUSIVE lock taken without waiting more than a second (else it
// is loaded with its indexes): anyone reading it waits for its load. Of its
// indexes, those are dropped that nothing depends on (a foreign key needs
// the unique index it references), that are valid, not a partition's, not
// the replica identity's by USING INDEX nor the one CLUSTER uses, in the
// database's default tablespace (the definitions rebuilt from do not name
// it), and not commented; one that
// backs a primary key, unique or exclusion constraint goes with its
// constraint and comes back by ALTER TABLE ... ADD CONSTRAINT, under the
// same name, with the definition the catalog gives.
func deferIndexes(ctx context.Context, tx pgx.Tx, t table) ([]string, error) {
	var empty bool
	if err := tx.QueryRow(ctx, "SELECT NOT EXISTS (SELECT FROM "+t.ident()+")").Scan(&empty); err != nil || !empty {
		return nil, err
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer sp.Rollback(context.Background()) //nolint:errcheck // no-op after commit
	if _, err := sp.Exec(ctx, "SET LOCAL lock_timeout = '1s'"); err != nil {
		return nil, err
	}
	if _, err := sp.Exec(ctx, "LOCK TABLE "+t.ident()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		// lock_not_available, or a deadlock with a reader of the table
		// that this lock request lost: load with the indexes.
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && (pe.Code == "55P03" || pe.Code == "40P01") {
			return nil, nil
		}
		return nil, err
	}
	if _, err := sp.Exec(ctx, "SET LOCAL lock_timeout TO DEFAULT"); err != nil {
		return nil, err
	}
	if err := sp.QueryRow(ctx, "SELECT NOT EXISTS (SELECT FROM "+t.ident()+")").Scan(&empty); err != nil || !empty {
		return nil, err
	}
	rows, err := sp.Query(ctx, `
		SELECT CASE WHEN con.oid IS NULL THEN format('DROP INDEX %I.%I', n.nspname, ic.relname)
				ELSE format('ALTER TABLE %s DROP CONSTRAINT %I', i.indrelid::regclass, con.conname) END,
			CASE WHEN con.oid IS NULL THEN pg_get_indexdef(i.indexrelid)
				ELSE format('ALTER TABLE %s ADD CONSTRAINT %I %s', i.indrelid::regclass, con.conname, pg_get_constraintdef(con.oid)) END
		FROM pg_index i
		JOIN pg_class ic ON ic.oid = i.indexrelid
		JOIN pg_namespace n ON n.oid = ic.relnamespace
		LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')
		WHERE i.indrelid = $1::regclass AND i.indisvalid AND NOT i.indisreplident AND NOT i.indisclustered
			AND NOT ic.relispartition AND ic.reltablespace = 0
			AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indexrelid)
			AND obj_description(i.indexrelid, 'pg_class') IS NULL
			AND (con.oid IS NULL OR obj_description(con.oid, 'pg_constraint') IS NULL)
		ORDER BY ic.relname`, t.ident())
	if err != nil {
		return nil, err
	}
	var drop, build []string
	for rows.Next() {
		var d, b string
		if err := rows.Scan(&d, &b); err != nil {
			rows.Close()
			return nil, err
		}
		drop, build = append(drop, d), append(build, b)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, stmt := range drop {
		if _, err := sp.Exec(ctx, stmt); err != nil {
			return nil, err
		}
	}
	return build, sp.Commit(ctx)
}

// relation is what plan needs of one table on the source.
type relation struct {
	cols  string  // the columns COPY FROM takes, quoted
	pages int64   // size in pages, all tenants
	key   *string // the primary key's column after tenant_id when an integer
}

// relations reads c.tables' relation from the source's catalog in one
// query (one round trip, not two per table): the columns COPY FROM takes
// (not dropped, not generated) in the source's order, which naming on both
// sides keeps the copy right even where the column order differs; the
// size; and the key column a large table is split by.
func (c *tableCopy) relations(ctx context.Context) ([]relation, error) {
	idents := make([]string, len(c.tables))
	for i, t := range c.tables {
		idents[i] = t.ident()
	}
	rows, err := c.src.Query(ctx, `
		SELECT t.ord,
			ARRAY(SELECT a.attname FROM pg_attribute a
				WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
				ORDER BY a.attnum)::text[],
			pg_relation_size(t.oid) / current_setting('block_size')::int,
			(SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[1]
			 WHERE i.indrelid = t.oid AND i.indisprimary AND i.indnatts > 1
			 AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype))::text
		FROM unnest($1::text[]::regclass[]) WITH ORDINALITY AS t(oid, ord)`, idents)
	if err != nil {
		return nil, fmt.Errorf("plan the copy: %w", err)
	}
	out := make([]relation, len(c.tables))
	seen := 0
	for rows.Next() {
		var (
			ord   int64
			names []string
			r     relation
		)
		if err := rows.Scan(&ord, &names, &r.pages, &r.key); err != nil {
			rows.Close()
			return nil, fmt.Errorf("plan the copy: %w", err)
		}
		for i, n := range names {
			names[i] = pgx.Identifier{n}.Sanitize()
		}
		r.cols = strings.Join(names, ", ")
		out[ord-1] = r
		seen++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("plan the copy: %w", err)
	}
	if seen != len(c.tables) {
		return nil, fmt.Errorf("plan the copy: the catalog described %d of %d tables", seen, len(c.tables))
	}
	return out, nil
}

// pipe runs COPY TO statement out on sc into COPY FROM statement in on dc,
// counting messages and bytes into s, and returns the rows loaded.
func pipe(ctx context.Context, sc, dc *pgconn.PgConn, out, in string, cw *countingWriter) (int64, error) {
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		bw := bufio.NewWriterSize(pw, copyBuffer)
		cw.w = bw
		_, err := sc.CopyTo(ctx, cw, out)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
		errc <- err
	}()
	tag, err := dc.CopyFrom(ctx, pr, in)
	pr.CloseWithError(errors.New("copy in ended"))
	outErr := <-errc
	if err != nil {
		return 0, err
	}
	if outErr != nil {
		return 0, fmt.Errorf("copy out: %w", outErr)
	}
	return tag.RowsAffected(), nil
}

// countingWriter counts what COPY TO writes into its table's progress: one
// CopyData message per row (the binary header rides with the first, the
// trailer is one more).
type countingWriter struct {
	w    io.Writer
	s    *tableState
	msgs int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.msgs++
	c.s.rows.Add(1)
	c.s.bytes.Add(int64(len(p)))
	return c.w.Write(p)
}
