package verify

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// differingKeys compares per-row hashes of range r on both sides and
// returns up to limit keys that are changed, missing or extra.
func (p pair) differingKeys(ctx context.Context, ts *tableSQL, tenant string, r Range, limit int) ([]Key, error) {
	sql, a := ts.rowHash(r), args(tenant, r)
	type rows = map[string]rowHash
	var s, d rows
	errc := make(chan error, 1)
	go func() {
		var err error
		d, err = rowHashes(ctx, p.dst, ts.nkey, sql, a)
		errc <- err
	}()
	s, serr := rowHashes(ctx, p.src, ts.nkey, sql, a)
	if derr := <-errc; derr != nil {
		return nil, fmt.Errorf("row hashes of %s on target: %w", ts.name, derr)
	}
	if serr != nil {
		return nil, fmt.Errorf("row hashes of %s on source: %w", ts.name, serr)
	}
	var out []Key
	add := func(k Key) bool {
		out = append(out, k)
		return len(out) < limit
	}
	for id, sr := range s {
		if dr, ok := d[id]; (!ok || dr.hash != sr.hash) && !add(sr.key) {
			return out, nil
		}
	}
	for id, dr := range d {
		if _, ok := s[id]; !ok && !add(dr.key) {
			return out, nil
		}
	}
	return out, nil
}

type rowHash struct {
	key  Key
	hash int64
}

func rowHashes(ctx context.Context, conn *pgx.Conn, nkey int, sql string, args []any) (map[string]rowHash, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	out := map[string]rowHash{}
	k := make(Key, nkey)
	var h int64
	dst := make([]any, nkey+1)
	for i := range k {
		dst[i] = &k[i]
	}
	dst[nkey] = &h
	_, err = pgx.ForEachRow(rows, dst, func() error {
		key := append(Key(nil), k...)
		out[strings.Join(key, "\x00")] = rowHash{key: key, hash: h}
		return nil
	})
	return out, err
}
