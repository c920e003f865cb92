package logrepl

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"tenantry/registry"
)

// DefaultSequenceGap is the jump in ids a promotion makes on the target
// (DESIGN.md, tenant data rule 2).
const DefaultSequenceGap = 1_000_000

// SequenceBump reports what BumpSequences did to one sequence.
type SequenceBump struct {
	Sequence string `json:"sequence"`
	Source   int64  `json:"source"` // last value on the source
	Before   int64  `json:"before"` // last value on the target before
	After    int64  `json:"after"`  // last value on the target after
}

// TenantSequences lists the sequences the tenant tables draw ids from:
// sequences a column default of a table depends on (default nextval('x'),
// serial columns; what pg_get_serial_sequence misses for explicit
// sequences) and identity sequences, as quoted "schema"."name".
func TenantSequences(ctx context.Context, q Querier, tables []string) ([]string, error) {
	ts, err := parseTables(tables)
	if err != nil {
		return nil, err
	}
	regs := make([]string, len(ts))
	for i, t := range ts {
		regs[i] = t.ident()
	}
	rows, err := q.Query(ctx, `
		WITH t AS (SELECT to_regclass(r) AS oid FROM unnest($1::text[]) r),
		seqs AS (
			SELECT d.refobjid AS seq FROM pg_attrdef ad
			JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
				AND d.refclassid = 'pg_class'::regclass
			WHERE ad.adrelid IN (SELECT oid FROM t)
			UNION
			SELECT d.objid FROM pg_depend d
			WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
				AND d.deptype IN ('a', 'i') AND d.refobjid IN (SELECT oid FROM t))
		SELECT DISTINCT n.nspname, c.relname FROM seqs
		JOIN pg_class c ON c.oid = seqs.seq AND c.relkind = 'S'
		JOIN pg_namespace n ON n.oid = c.relnamespace
		ORDER BY 1, 2`, regs)
	if err != nil {
		return nil, fmt.Errorf("discover sequences: %w", err)
	}
	var out []string
	var s, n string
	_, err = pgx.ForEachRow(rows, []any{&s, &n}, func() error {
		out = append(out, pgx.Identifier{s, n}.Sanitize())
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("discover sequences: %w", err)
	}
	return out, nil
}

// sequenceValues reads the last value of each sequence (quoted names);
// a sequence never used counts as start - increment. Only ascending
// sequences are supported.
func sequenceValues(ctx context.Context, q Querier, seqs []string) (map[string]int64, error) {
	rows, err := q.Query(ctx, `
		SELECT r, coalesce(s.last_value, s.start_value - s.increment_by), s.increment_by
		FROM unnest($1::text[]) r
		JOIN pg_class c ON c.oid = to_regclass(r)
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_sequences s ON s.schemaname = n.nspname AND s.sequencename = c.relname`, seqs)
	if err != nil {
		return nil, fmt.Errorf("read sequences: %w", err)
	}
	out := make(map[string]int64, len(seqs))
	var name string
	var last, inc int64
	_, err = pgx.ForEachRow(rows, []any{&name, &last, &inc}, func() error {
		if inc <= 0 {
			return fmt.Errorf("%w: sequence %s descends", registry.ErrInvalid, name)
		}
		out[name] = last
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read sequences: %w", err)
	}
	for _, s := range seqs {
		if _, ok := out[s]; !ok {
			return nil, fmt.Errorf("%w: sequence %s", registry.ErrNotFound, s)
		}
	}
	return out, nil
}

// BumpSequences moves every sequence of the tenant tables on dst to at
// least its value on src plus gap, so that ids made on dst from now on
// never meet ids src made or will make before it has issued gap more. A
// sequence already there is left alone: the call is idempotent and never
// moves a sequence backwards (re-running it after a crash does not jump
// again). Ids stay unique across move, cutback and move again because each
// direction lifts the receiving side above the sending one.
//
// Source and target are read at the same time. The target's setval is
// conditional on its current value in one statement; a writer drawing from
// the same target sequence between that read and the setval could still
// see the value lowered, which a gap far above the write rate makes moot.
func BumpSequences(ctx context.Context, src, dst Querier, tables []string, gap int64) ([]SequenceBump, error) {
	if gap < 0 {
		return nil, fmt.Errorf("%w: negative sequence gap %d", registry.ErrInvalid, gap)
	}
	seqs, err := TenantSequences(ctx, src, tables)
	if err != nil || len(seqs) == 0 {
		return nil, err
	}
	var sv, dv map[string]int64
	err = both(ctx, src, dst, func(ctx context.Context, q Querier, onSrc bool) error {
		v, err := sequenceValues(ctx, q, seqs)
		if onSrc {
			sv = v
		} else {
			dv = v
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]SequenceBump, 0, len(seqs))
	for _, s := range seqs {
		b := SequenceBump{Sequence: s, Source: sv[s], Before: dv[s], After: dv[s]}
		if want := sv[s] + gap; want > b.Before {
			_, err := dst.Exec(ctx, `
				SELECT setval(c.oid, $2, true) FROM pg_class c
				JOIN pg_namespace n ON n.oid = c.relnamespace
				JOIN pg_sequences q ON q.schemaname = n.nspname AND q.sequencename = c.relname
				WHERE c.oid = to_regclass($1) AND coalesce(q.last_value, q.start_value - q.increment_by) < $2`, s, want)
			if err != nil {
				return nil, fmt.Errorf("set sequence %s: %w", s, err)
			}
			b.After = want
		}
		out = append(out, b)
	}
	return out, nil
}

// EnsureSequencesAbove is the cheap variant for inside the promotion pause
// when BumpSequences with its gap ran before: it only lifts a target
// sequence that is not yet at or above the source's last value (so the
// target's next id is above every id the source issued). Never backwards.
func EnsureSequencesAbove(ctx context.Context, src, dst Querier, tables []string) ([]SequenceBump, error) {
	return BumpSequences(ctx, src, dst, tables, 0)
}
