package oms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/jackc/pgx/v5"
)

// Idempotency headers.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderReplayed       = "Idempotent-Replayed"
)

// MaxIdempotencyKey is the longest Idempotency-Key accepted.
const MaxIdempotencyKey = 200

// write runs fn in a read-write transaction and answers with its status and
// body. With an Idempotency-Key the key is claimed first in the same
// transaction, and the response is stored there with the effect:
//
//   - a new key runs fn and stores status and body;
//   - a key whose stored request has the same method, path and body hash is
//     replayed: the stored response, header Idempotent-Replayed: true, and
//     nothing written;
//   - a key stored for another request is answered 422 idempotency_key_reused.
//
// Only successes are stored: an error rolls the transaction back, key
// included, so a retry after an error runs again. Two identical requests at
// once serialise on the key's primary key: the second waits for the first to
// commit and then replays it (or runs, if the first rolled back).
func (s *Server) write(w http.ResponseWriter, r *request, body []byte, fn func(ctx context.Context, tx pgx.Tx) (int, any, error)) error {
	key := r.Header.Get(HeaderIdempotencyKey)
	if err := validIdempotencyKey(key); err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	ctx := r.Context()
	var (
		status   int
		out      []byte
		replayed bool
	)
	err := s.cfg.DB.Tx(ctx, r.tenant, func(tx pgx.Tx) error {
		replayed = false
		if key != "" {
			st, stored, found, err := claimKey(ctx, tx, r, key, hash)
			if err != nil || found {
				status, out, replayed = st, stored, found
				return err
			}
		}
		st, v, err := fn(ctx, tx)
		if err != nil {
			return err
		}
		status = st
		if out, err = json.Marshal(v); err != nil {
			return err
		}
		if key == "" {
			return nil
		}
		// Answer with the stored text, so the first response and every
		// replay are byte-for-byte the same.
		return tx.QueryRow(ctx, `UPDATE idempotency_keys SET status = $3, response = $4
WHERE tenant_id = $1 AND key = $2 RETURNING response::text`, r.tenant, key, status, string(out)).Scan(&out)
	})
	if err != nil {
		return err
	}
	if replayed {
		w.Header().Set(HeaderReplayed, "true")
	}
	writeRaw(w, status, out)
	return nil
}

// claimKey inserts the key as a placeholder; if it exists, it returns the
// stored response (found) or idempotency_key_reused.
func claimKey(ctx context.Context, tx pgx.Tx, r *request, key, hash string) (status int, out []byte, found bool, err error) {
	tag, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (tenant_id, key, method, path, request_hash, status, response)
VALUES ($1, $2, $3, $4, $5, 0, 'null') ON CONFLICT (tenant_id, key) DO NOTHING`,
		r.tenant, key, r.Method, r.URL.Path, hash)
	if err != nil {
		return 0, nil, false, err
	}
	if tag.RowsAffected() == 1 {
		return 0, nil, false, nil
	}
	var method, path, storedHash string
	err = tx.QueryRow(ctx, `SELECT method, path, request_hash, status, response::text
FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, r.tenant, key).Scan(&method, &path, &storedHash, &status, &out)
	if err != nil {
		return 0, nil, false, err
	}
	if method != r.Method || path != r.URL.Path || storedHash != hash {
		return 0, nil, false, apiErr(CodeIdempotencyKeyReused,
			"Idempotency-Key was used for another request (%s %s)", method, path)
	}
	return status, out, true, nil
}

func validIdempotencyKey(key string) error {
	if len(key) > MaxIdempotencyKey {
		return invalid("Idempotency-Key must be at most %d characters", MaxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return invalid("Idempotency-Key must be printable ASCII")
		}
	}
	return nil
}

// errNoRows reports pgx.ErrNoRows.
func errNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
